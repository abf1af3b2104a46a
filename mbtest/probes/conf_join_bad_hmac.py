"""MP_JOIN with a real token, then a third ACK whose HMAC is wrong: is the subflow reset?

RFC 8684 §3.2: "If Host B does not receive the expected HMAC, or the MP_JOIN option is
missing from the ACK, it MUST close the subflow with a TCP RST."

The probe sets up an MPTCP connection, joins it with a second subflow (the SYN/ACK's HMAC is
checked), then sends the join's third ACK with a wrong HMAC. Accepted: a RST (its MP_TCPRST
reason is reported; §3.2 says it SHOULD be "MPTCP specific error"). An ACK (the subflow
accepted) or silence deviates.
"""

from mbtest.mptcp import crypto
from mbtest.mptcp.options import MpJoinAck, MpJoinSyn, MpJoinSynAck
from mbtest.probe.conform import reset_outcome
from mbtest.probe.session import Connection, ProbeSetupError

NAME = "conf_join_bad_hmac"
SUITE = "conformance"
RFC = "RFC 8684 §3.2"
QUOTE = (
    "If Host B does not receive the expected HMAC, or the MP_JOIN option is missing from the "
    "ACK, it MUST close the subflow with a TCP RST."
)
OUTCOMES = {"reset": ("as-expected", "§3.2: a RST for a join whose HMAC is wrong")}


def exercise(session, exchange):
    conn = session.handshake()
    nonce = session.rng.randrange(1 << 32)
    syn = session.syn(MpJoinSyn(token=conn.remote_token, nonce=nonce, address_id=1))
    exchange.step = "join SYN"
    answer = session.exchange(syn, lambda s: s.rst or (s.syn and s.is_ack))
    if answer is None or answer.rst:
        raise ProbeSetupError("the target did not accept the join (no SYN/ACK)")
    synack = next((o for o in answer.mptcp_options() if isinstance(o, MpJoinSynAck)), None)
    if synack is None:
        raise ProbeSetupError("the join's SYN/ACK carries no MP_JOIN")
    expected = crypto.join_synack_hmac(conn.remote_key, conn.local_key, synack.nonce, nonce)
    exchange.context.update(synack_hmac_valid=synack.hmac == expected)
    ts = next((int.from_bytes(v[:4], "big") for k, v in answer.options() if k == 8), None)
    subflow = Connection(
        session, syn.sport, syn.seq, answer.seq, conn.local_key, conn.remote_key, conn.checksums, ts
    )
    good = crypto.join_ack_hmac(conn.local_key, conn.remote_key, nonce, synack.nonce)
    wrong = bytes(b ^ 0xFF for b in good)
    exchange.send(subflow.segment(MpJoinAck(hmac=wrong)), "third ACK, wrong HMAC")
    exchange.listen(syn.sport, session.timeout)


def judge(recorded, context):
    silence = "the target said nothing to the wrong HMAC (no RST)"
    return reset_outcome(recorded.answers("third ACK, wrong HMAC"), silence, "accepted")
