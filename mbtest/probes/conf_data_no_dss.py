"""Data with no DSS after an MP_CAPABLE handshake: ACKed by TCP only, not at the data level?

RFC 8684 §3.3.1: "Therefore, even if a mapping does not exist from the subflow space to the
data-level space, the data SHOULD still be ACKed at the subflow (if it is in-window). This
data cannot, however, be acknowledged at the data level (Section 3.3.2) because its data
sequence numbers are unknown."

Accepted: the data acknowledged by TCP but not at the data level (as expected; the sender
then falls back, §3.7); the target falling back itself (permitted: §6 treats unmapped
subflow space as broken, and on the only subflow §3.7's answer is a fallback); a RST
(permitted: §3.3.1, a subflow without a mapping "SHOULD be treated as broken, closed with a
RST"). A Data ACK covering the unmapped bytes deviates.
"""

from mbtest.probe.conform import data_outcome

NAME = "conf_data_no_dss"
SUITE = "conformance"
RFC = "RFC 8684 §3.3.1, §3.7"
QUOTE = (
    "Therefore, even if a mapping does not exist from the subflow space to the data-level "
    "space, the data SHOULD still be ACKed at the subflow (if it is in-window). This data "
    "cannot, however, be acknowledged at the data level (Section 3.3.2) because its data "
    "sequence numbers are unknown."
)
OUTCOMES = {
    "held": ("as-expected", "§3.3.1: ACKed at the subflow level, not at the data level"),
    "fallback": (
        "permitted-variant",
        "§6, §3.7: unmapped subflow space is treated as broken; on the only subflow that "
        "means falling back to regular TCP",
    ),
    "reset": (
        "permitted-variant",
        "§3.3.1: a subflow left without a mapping SHOULD be treated as broken and closed "
        "with a RST",
    ),
}
PAYLOAD = b"mbtest conformance: data with no DSS option after the handshake\n"


def exercise(session, exchange):
    conn = session.handshake()
    segment = conn.data(PAYLOAD)  # timestamps only: no mapping at all
    exchange.send_data(conn, segment, "data")


def judge(recorded, context):
    return data_outcome(recorded.answers("data"), context["end_seq"], context["data_end"])
