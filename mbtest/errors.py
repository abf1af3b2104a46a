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


class Interrupted(MbtestError):
    """Ctrl-C, raised as our own error so that every owner tears down what it made."""

    exit_code = 130


class Terminated(MbtestError):
    """SIGTERM, raised in the main thread so that every owner tears down what it made."""

    exit_code = 143
