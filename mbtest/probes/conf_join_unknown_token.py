"""MP_JOIN SYN with a token no connection has: a RST, as §3.2 says?

RFC 8684 §3.2: "If the token received at Host B is unknown or local policy prohibits the
acceptance of the new subflow, the recipient MUST respond with a TCP RST for the subflow."

A join with a real token first is the control (a SYN/ACK with MP_JOIN shows MP_JOIN crosses
the path both ways; otherwise inconclusive). Accepted: a RST (its MP_TCPRST reason is
reported: the RFC names both "MPTCP specific error" and "Administratively prohibited" for
this case). A SYN/ACK, with or without MP_JOIN, deviates."""

from mbtest.mptcp.options import MpJoinSyn, MpJoinSynAck
from mbtest.probe import wire

NAME = "conf_join_unknown_token"
SUITE = "conformance"
RFC = "RFC 8684 §3.2"
QUOTE = (
    "If the token received at Host B is unknown or local policy prohibits the acceptance of "
    "the new subflow, the recipient MUST respond with a TCP RST for the subflow."
)
OUTCOMES = {"reset": ("as-expected", "§3.2: a RST for a join to an unknown token")}


def exercise(session, exchange):
    # the control: a join with a real token gets a SYN/ACK with MP_JOIN (MP_JOIN crosses)
    conn = session.handshake()
    exchange.step = "control join"
    real = session.syn(MpJoinSyn(token=conn.remote_token, nonce=session.rng.randrange(1 << 32)))
    _reset_if_accepted(session, real, session.exchange(real, _answered))
    token = session.rng.randrange(1 << 32)
    syn = session.syn(MpJoinSyn(token=token, nonce=session.rng.randrange(1 << 32)))
    exchange.context.update(token=token)
    exchange.step = "join to an unknown token"
    _reset_if_accepted(session, syn, session.exchange(syn, _answered))


def _answered(seg):
    return seg.rst or (seg.syn and seg.is_ack)


def _reset_if_accepted(session, syn, answer):
    if answer is not None and not answer.rst:  # a SYN/ACK: the half-open subflow is reset
        session.send(
            wire.Segment(
                session.source, session.target, syn.sport, session.port, answer.ack, flags="R"
            )
        )


def judge(recorded, context):
    if not recorded.answers("control join").options(MpJoinSynAck):
        return "inconclusive", (
            "the control join (a real token) got no SYN/ACK with MP_JOIN "
            f"({recorded.answers('control join').describe()}): MP_JOIN does not cross this "
            "path both ways, or the target refuses every join"
        )
    got = recorded.answers("join to an unknown token")
    return join_answer(got)


def join_answer(got):
    if not got:
        return "no-answer", "the target did not answer the MP_JOIN SYN"
    first = got[0]
    if first.rst:
        return "reset", got.reset_text()
    if first.syn and first.is_ack:
        if got.options(MpJoinSynAck):
            return (
                "join-accepted",
                "a SYN/ACK with MP_JOIN: the join to an unknown token was accepted",
            )
        return "plain-syn-ack", "a SYN/ACK without MP_JOIN: a plain TCP subflow was accepted"
    return "other", f"an unexpected answer: {got.describe()}"
