"""MP_FASTCLOSE with a wrong key: ignored, the connection still carrying data?

RFC 8684 §3.5: "Upon receipt of an ACK with MP_FASTCLOSE by Host B, containing the valid
key, Host B answers on the same subflow with a TCP RST and tears down all subflows also
through sending TCP RST signals."

Only the valid key closes the connection (anyone on the path could otherwise end it with a
guess). After the wrong-key MP_FASTCLOSE the probe sends mapped data, then MP_FASTCLOSE with
the right key as the control (it must be answered by a RST, else inconclusive). Accepted: no
RST and the data acknowledged at the data level (as expected). A RST deviates.
"""

from mbtest.mptcp.options import MpFastclose
from mbtest.probe.conform import FASTCLOSE_QUOTE, control_mapping, data_outcome

NAME = "conf_fastclose_wrong_key"
SUITE = "conformance"
RFC = "RFC 8684 §3.5"
QUOTE = FASTCLOSE_QUOTE
OUTCOMES = {
    "ignored": ("as-expected", "§3.5: only the valid key closes; the connection carries on"),
}
PAYLOAD = b"mbtest conformance: data after an MP_FASTCLOSE with a wrong key\n"


def exercise(session, exchange):
    conn = session.handshake()
    control_mapping(session, exchange, conn)  # data is acknowledged at the data level here
    wrong = conn.remote_key ^ 0x0123456789ABCDEF
    exchange.send(conn.segment(MpFastclose(receiver_key=wrong)), "fastclose, wrong key")
    exchange.listen(conn.sport, session.timeout / 2)
    segment = conn.data(PAYLOAD, conn.data_mapping(PAYLOAD))
    exchange.send_data(conn, segment, "data")
    # the control: the right key does close it (MP_FASTCLOSE crosses the path)
    exchange.send(conn.segment(MpFastclose(receiver_key=conn.remote_key)), "fastclose, right key")
    exchange.listen(conn.sport, session.timeout)


def judge(recorded, context):
    if not recorded.answers("fastclose, right key").resets():
        return "inconclusive", (
            "the control, MP_FASTCLOSE with the right key, was not answered by a RST: "
            "MP_FASTCLOSE may not cross this path, so ignoring the wrong key shows nothing"
        )
    closed = recorded.answers("fastclose, wrong key")
    if closed.resets():
        return "reset", f"the wrong key closed the connection: {closed.describe()}"
    outcome, why = data_outcome(recorded.answers("data"), context["end_seq"], context["data_end"])
    if outcome == "mptcp-acked":
        return "ignored", f"no RST; later data {why}"
    return outcome, f"after the wrong-key MP_FASTCLOSE, {why}"
