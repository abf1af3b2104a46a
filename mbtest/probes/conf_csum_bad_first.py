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

from mbtest.probe.conform import (
    CHECKSUM_OUTCOMES,
    CHECKSUM_QUOTE,
    control_mapping,
    mp_fail_outcome,
    send_bad_checksum,
)

NAME = "conf_csum_bad_first"
SUITE = "conformance"
RFC = "RFC 8684 §3.7"
QUOTE = CHECKSUM_QUOTE
OUTCOMES = CHECKSUM_OUTCOMES
PAYLOAD = b"mbtest conformance: the first mapping, its DSS checksum wrong\n"


def exercise(session, exchange):
    control_mapping(session, exchange, checksums=True)  # on a connection of its own
    exchange.step = "handshake"
    conn = session.handshake(checksums=True)
    send_bad_checksum(session, exchange, conn, PAYLOAD)


def judge(recorded, context):
    return mp_fail_outcome(recorded.answers("bad checksum"), context)
