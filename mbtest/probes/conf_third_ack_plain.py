"""The handshake's third ACK without MP_CAPABLE: does the target fall back to regular TCP?

RFC 8684 §3.1: "If the third packet (the ACK) does not contain the MP_CAPABLE option, then
the session MUST fall back to operating as a regular, single-path TCP."

The probe completes the handshake with a plain ACK (as a middlebox that strips the option
from it would leave it), then sends data without MPTCP options. Accepted: plain TCP from
then on. A DSS in the target's answers, or a RST, deviates.
"""

from mbtest.probe.conform import THIRD_ACK_QUOTE, data_outcome

NAME = "conf_third_ack_plain"
SUITE = "conformance"
RFC = "RFC 8684 §3.1"
QUOTE = THIRD_ACK_QUOTE
OUTCOMES = {
    "fallback": ("as-expected", "§3.1: regular TCP after a third ACK without MP_CAPABLE"),
}
PAYLOAD = b"mbtest conformance: plain TCP data after a third ACK without MP_CAPABLE\n"


def exercise(session, exchange):
    conn = session.handshake(third_ack="plain")
    segment = conn.data(PAYLOAD)
    exchange.send_data(conn, segment, "data")


def judge(recorded, context):
    return data_outcome(recorded.answers("data"), context["end_seq"])
