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

from mbtest.probe.conform import (
    CHECKSUM_OUTCOMES,
    CHECKSUM_QUOTE,
    control_mapping,
    mp_fail_outcome,
    send_bad_checksum,
)

NAME = "conf_csum_bad"
SUITE = "conformance"
RFC = "RFC 8684 §3.7"
QUOTE = CHECKSUM_QUOTE
OUTCOMES = CHECKSUM_OUTCOMES
BAD = b"mbtest conformance: a mapping whose DSS checksum is wrong\n"


def exercise(session, exchange):
    conn = session.handshake(checksums=True)
    control_mapping(session, exchange, conn)  # the good mapping, acknowledged at data level
    send_bad_checksum(session, exchange, conn, BAD)


def judge(recorded, context):
    return mp_fail_outcome(recorded.answers("bad checksum"), context)
