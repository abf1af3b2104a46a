"""The pure MPTCP protocol core: option codec, crypto and scapy glue. No I/O."""

from mbtest.mptcp.options import *  # noqa: F403
from mbtest.mptcp.options import __all__  # noqa: F401
