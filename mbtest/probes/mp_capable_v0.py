"""SYN with MP_CAPABLE v0 (RFC 6824) carrying a key: how paths and targets treat the old version."""

from mbtest.mptcp.options import MpCapable

NAME = "mp_capable_v0"


def build(session):
    key = session.rng.randrange(1, 1 << 64)
    return session.syn(MpCapable(version=0, hmac_sha256=True, sender_key=key))
