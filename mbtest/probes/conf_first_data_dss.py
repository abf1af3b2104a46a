"""The third ACK lost and the first data carrying a DSS instead of MP_CAPABLE: a fallback?

RFC 8684 §3.1: "If the third packet (the ACK) does not contain the MP_CAPABLE option, then
the session MUST fall back to operating as a regular, single-path TCP."

Here the third packet is the first data segment, with a DSS mapping but no MP_CAPABLE (the
"MP_CAPABLE data form" that repeats the keys): the target never learns the probe's key.
Accepted: plain TCP from then on. Acknowledging the data at the data level, or a RST,
deviates.
"""

from mbtest.probe.conform import THIRD_ACK_QUOTE, data_outcome

NAME = "conf_first_data_dss"
SUITE = "conformance"
RFC = "RFC 8684 §3.1"
QUOTE = THIRD_ACK_QUOTE
OUTCOMES = {
    "fallback": (
        "as-expected",
        "§3.1: the third packet carried no MP_CAPABLE: regular TCP from then on",
    ),
}
PAYLOAD = b"mbtest conformance: first data with a DSS but no MP_CAPABLE data form\n"


def exercise(session, exchange):
    conn = session.handshake(third_ack="none")
    mapping = conn.data_mapping(PAYLOAD)
    segment = conn.data(PAYLOAD, mapping)
    exchange.send_data(conn, segment, "data")


def judge(recorded, context):
    return data_outcome(recorded.answers("data"), context["end_seq"], context["data_end"])
