"""MP_FASTCLOSE on an ACK with the right key: does the target answer with a RST?

RFC 8684 §3.5: "Upon receipt of an ACK with MP_FASTCLOSE by Host B, containing the valid
key, Host B answers on the same subflow with a TCP RST and tears down all subflows also
through sending TCP RST signals."

Accepted: a RST. Anything else deviates.
"""

from mbtest.mptcp.options import MpFastclose
from mbtest.probe.conform import FASTCLOSE_QUOTE, reset_outcome

NAME = "conf_fastclose"
SUITE = "conformance"
RFC = "RFC 8684 §3.5"
QUOTE = FASTCLOSE_QUOTE
OUTCOMES = {"reset": ("as-expected", "§3.5: a RST answers MP_FASTCLOSE with the valid key")}


def exercise(session, exchange):
    conn = session.handshake()
    exchange.send(conn.segment(MpFastclose(receiver_key=conn.remote_key)), "fastclose")
    exchange.listen(conn.sport, session.timeout)


def judge(recorded, context):
    silence = "no RST (nothing came back)"
    return reset_outcome(recorded.answers("fastclose"), silence, "ignored")
