"""A wrong DSS checksum on the very first mapping of the connection: MP_FAIL, as §3.7 says?

RFC 8684 §3.7: "In this case, if a receiver identifies a checksum failure when there is only
one path, it will send back an MP_FAIL option on the subflow-level ACK, referring to the
data-level sequence number of the start of the segment on which the checksum error was
detected."

The RFC makes no exception for the first mapping (nothing was DATA_ACKed yet). Accepted:
MP_FAIL naming the mapping (as expected); MP_FAIL then a RST (permitted). No MP_FAIL
deviates: an implementation that falls back silently here says so in the answer (Linux
6.x does: it sends MP_FAIL only once a valid checksum was seen on the subflow). A control on
a connection of its own shows that DSS crosses the path both ways.
"""

from dataclasses import replace

from mbtest.probe.conform import control_mapping, mp_fail_outcome

RST_GRACE = 0.3  # seconds: how long a RST after the MP_FAIL is waited for
NAME = "conf_csum_bad_first"
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
PAYLOAD = b"mbtest conformance: the first mapping, its DSS checksum wrong\n"


def exercise(session, exchange):
    control_mapping(session, exchange, checksums=True)  # on a connection of its own
    exchange.step = "handshake"
    conn = session.handshake(checksums=True)
    mapping = conn.data_mapping(PAYLOAD)
    bad = conn.data(PAYLOAD, replace(mapping, checksum=mapping.checksum ^ 0x5A5A))
    end = (bad.seq + len(PAYLOAD)) & 0xFFFFFFFF
    exchange.context.update(end_seq=end, failed_dsn=mapping.dsn, data_end=conn.data_end())
    exchange.send(bad, "bad checksum")
    if exchange.listen(conn.sport, session.timeout, until=lambda got: got.mp_fail()).mp_fail():
        exchange.listen(conn.sport, RST_GRACE)  # a RST may follow the MP_FAIL (§3.7)


def judge(recorded, context):
    return mp_fail_outcome(recorded.answers("bad checksum"), context)
