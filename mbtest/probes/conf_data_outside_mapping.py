"""A segment whose data runs past its DSS mapping: the unmapped bytes are not DATA_ACKed?

RFC 8684 §3.3.1: "Implementations MAY hold onto such unmapped data for a short while in the
expectation that a mapping will arrive shortly." and "If a mapping for that subflow-level
sequence space does not arrive within a receive window of data, that subflow SHOULD be
treated as broken, closed with a RST, and any unmapped data silently discarded."

The mapping covers the first half of the segment's payload. Accepted: the mapped half
acknowledged at the data level and the rest not (as expected); a RST (permitted: the
subflow treated as broken); a fallback (permitted: §6 closes unmapped subflow space through
§3.7, which on the only subflow is a fallback). A Data ACK covering the unmapped bytes
deviates.
"""

from mbtest.probe.conform import control_mapping, data_ack_covers, data_outcome

NAME = "conf_data_outside_mapping"
SUITE = "conformance"
RFC = "RFC 8684 §3.3.1, §6"
QUOTE = (
    "Implementations MAY hold onto such unmapped data for a short while in the expectation "
    "that a mapping will arrive shortly. [...] If a mapping for that subflow-level sequence "
    "space does not arrive within a receive window of data, that subflow SHOULD be treated "
    "as broken, closed with a RST, and any unmapped data silently discarded."
)
OUTCOMES = {
    "held": (
        "as-expected",
        "§3.3.1: the unmapped bytes are not acknowledged at the data level",
    ),
    "reset": ("permitted-variant", "§3.3.1: the subflow treated as broken, closed with a RST"),
    "fallback": (
        "permitted-variant",
        "§6, §3.7: unmapped subflow space treated as broken; on the only subflow, a fallback",
    ),
}
PAYLOAD = b"mbtest conformance: the mapping covers this half / but not this other half.\n"


def exercise(session, exchange):
    conn = session.handshake()
    control_mapping(session, exchange, conn)  # MPTCP data crosses the path both ways
    half = len(PAYLOAD) // 2
    mapping = conn.data_mapping(PAYLOAD[:half])
    segment = conn.data(PAYLOAD, mapping)
    exchange.context.update(mapped_end=(mapping.dsn + half) & (2**64 - 1))
    exchange.send_data(conn, segment, "data")


def judge(recorded, context):
    got = recorded.answers("data")
    outcome, why = data_outcome(got, context["end_seq"], context["mapped_end"])
    if outcome == "mptcp-acked":
        if any(data_ack_covers(a, context["data_end"]) for a in got.data_acks()):
            return "acked-unmapped", f"the Data ACK covers the unmapped bytes: {got.describe()}"
        return "held", (
            "the mapped half is acknowledged at the data level, the unmapped half is not: "
            f"{got.describe()}"
        )
    return outcome, why
