"""SYN with MP_CAPABLE v1: does option 30 cross the path, does the target speak MPTCP?"""

from mbtest.mptcp.options import MpCapable

NAME = "mp_capable"


def build(session):
    return session.syn(MpCapable(version=1, hmac_sha256=True))
