"""One good mapping, then a mapping whose DSS checksum is wrong: MP_FAIL, as §3.7 says?

RFC 8684 §3.7: "In this case, if a receiver identifies a checksum failure when there is only
one path, it will send back an MP_FAIL option on the subflow-level ACK, referring to the
data-level sequence number of the start of the segment on which the checksum error was
detected."

Checksums are negotiated in the handshake; the good mapping is the control (not
acknowledged at the data level: the path does not carry DSS both ways, inconclusive).
Accepted: MP_FAIL naming the failed mapping's
data sequence number (as expected); MP_FAIL then a RST (permitted: §3.7 closes a subflow
whose data cannot be recovered with a RST featuring MP_FAIL). No MP_FAIL at all deviates.
"""

from dataclasses import replace

from mbtest.probe.conform import control_mapping, mp_fail_outcome

RST_GRACE = 0.3  # seconds: how long a RST after the MP_FAIL is waited for
NAME = "conf_csum_bad"
SUITE = "conformance"
RFC = "RFC 8684 §3.7"
QUOTE = (
    "In this case, if a receiver identifies a checksum failure when there is only one path, "
    "it will send back an MP_FAIL option on the subflow-level ACK, referring to the "
    "data-level sequence number of the start of the segment on which the checksum error "
    "was detected."
)
OUTCOMES = {
    "mp-fail": ("as-expected", "§3.7: MP_FAIL on the subflow-level ACK, one path"),
    "mp-fail-then-reset": (
        "permitted-variant",
        "§3.7: a subflow whose data cannot be recovered is closed with a RST featuring MP_FAIL",
    ),
}
BAD = b"mbtest conformance: a mapping whose DSS checksum is wrong\n"


def exercise(session, exchange):
    conn = session.handshake(checksums=True)
    control_mapping(session, exchange, conn)  # the good mapping, acknowledged at data level
    mapping = conn.data_mapping(BAD)
    broken = replace(mapping, checksum=mapping.checksum ^ 0x5A5A)
    bad = conn.data(BAD, broken)
    end = (bad.seq + len(BAD)) & 0xFFFFFFFF
    exchange.context.update(end_seq=end, failed_dsn=mapping.dsn, data_end=conn.data_end())
    exchange.send(bad, "bad checksum")
    if exchange.listen(conn.sport, session.timeout, until=lambda got: got.mp_fail()).mp_fail():
        exchange.listen(conn.sport, RST_GRACE)  # a RST may follow the MP_FAIL (§3.7)


def judge(recorded, context):
    return mp_fail_outcome(recorded.answers("bad checksum"), context)
