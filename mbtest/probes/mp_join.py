"""SYN with MP_JOIN carrying the token of a connection set up first with the target."""

from mbtest.mptcp import crypto
from mbtest.mptcp.options import MpJoinSyn, MpJoinSynAck
from mbtest.probe.session import ProbeSetupError

NAME = "mp_join"


def build(session):
    try:
        conn = session.handshake()
    except ProbeSetupError as e:
        conn = None
        token = session.rng.randrange(1 << 32)
        session.note(f"random token 0x{token:08x}: no MPTCP connection to join ({e})")
    else:
        token = conn.remote_token
    nonce = session.rng.randrange(1 << 32)

    def check(reply):
        join = next((o for o in reply.mptcp_options() if isinstance(o, MpJoinSynAck)), None)
        if join is None:
            return None
        if conn is None:
            return "the target accepted a join to a random token"
        expected = crypto.join_synack_hmac(conn.remote_key, conn.local_key, join.nonce, nonce)
        return "its HMAC is valid" if join.hmac == expected else "its HMAC is wrong"

    # A new subflow: a fresh source port, the same addresses, address id 1.
    return session.syn(MpJoinSyn(token=token, nonce=nonce, address_id=1), check=check)
