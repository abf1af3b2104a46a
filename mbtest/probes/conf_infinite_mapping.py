"""Data under an infinite mapping sent by the probe: does the target fall back to TCP?

RFC 8684 §3.7: "The receiver SHOULD stop generating Data ACKs after it receives an infinite
mapping." and "Once MPTCP falls back to regular TCP, it MUST NOT revert to MPTCP later in
the connection."

After a control mapping acknowledged at the data level, the probe's data carries a DSS whose
data-level length is 0 (an infinite mapping, §3.3.1). Accepted: acknowledged by plain TCP,
without Data ACKs. Data ACKs (still MPTCP) or a RST deviate."""

from mbtest.mptcp.options import Dss
from mbtest.probe.conform import control_mapping, data_outcome

NAME = "conf_infinite_mapping"
SUITE = "conformance"
RFC = "RFC 8684 §3.7, §3.3.1"
QUOTE = "The receiver SHOULD stop generating Data ACKs after it receives an infinite mapping."
OUTCOMES = {
    "fallback": ("as-expected", "§3.7: no more Data ACKs after an infinite mapping"),
}
PAYLOAD = b"mbtest conformance: data under an infinite mapping\n"


def exercise(session, exchange):
    conn = session.handshake()
    control_mapping(session, exchange, conn)  # MPTCP data crosses the path both ways
    mapping = conn.data_mapping(PAYLOAD)
    infinite = Dss(
        data_ack=mapping.data_ack,
        data_ack_8_bytes=False,
        dsn=mapping.dsn,
        subflow_seq=mapping.subflow_seq,
        data_length=0,
        checksum=0 if conn.checksums else None,
    )
    segment = conn.data(PAYLOAD, infinite)
    exchange.send_data(conn, segment, "infinite mapping")


def judge(recorded, context):
    got = recorded.answers("infinite mapping")
    return data_outcome(got, context["end_seq"], context["data_end"])
