"""One exception tree: the CLI turns any of these into one clear line and a non-zero exit."""


class MbtestError(Exception):
    """Base of every error mbtest reports to a user as one sentence."""

    exit_code = 2


class CodecError(MbtestError, ValueError):
    """Bytes that are not a well-formed MPTCP option, or an option that cannot be encoded."""


class PacketError(MbtestError, ValueError):
    """Bytes that are not a well-formed IPv4/IPv6/TCP packet."""


class CaptureError(MbtestError):
    """A capture file that is missing, empty, truncated or not a pcap/pcapng file."""


class EnvironmentProblem(MbtestError):
    """The machine cannot run the job: not root, MPTCP disabled, a tool missing."""


class Stopped(KeyboardInterrupt):
    """A signal asked the run to stop. A KeyboardInterrupt, so that no ``except Exception``
    on the way swallows it and event loops (asyncio, inside pyroute2) pass it on instead of
    logging it; every owner tears down what it made."""

    exit_code = 130


class Interrupted(Stopped):
    """SIGINT (Ctrl-C)."""

    exit_code = 130


class Terminated(Stopped):
    """SIGTERM."""

    exit_code = 143
