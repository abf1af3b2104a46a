"""One exception tree: the CLI turns any of these into one clear line and a non-zero exit.

Exit statuses, the same for every command: 0 nothing to report, 1 findings (a deviation, a
flaky or inconclusive cell, a change on the path; --no-fail makes them 0), 2 usage errors
(bad input), 3 the harness failed, 130 / 143 interrupted by SIGINT / SIGTERM."""

OK, FINDINGS, USAGE, HARNESS, INTERRUPTED, TERMINATED = 0, 1, 2, 3, 130, 143


class MbtestError(Exception):
    """Base of every error mbtest reports to a user as one sentence: bad input by default."""

    exit_code = USAGE


class HarnessError(MbtestError):
    """The tool could not do its job (a tool failed, a testbed could not be built)."""

    exit_code = HARNESS


class CodecError(MbtestError, ValueError):
    """Bytes that are not a well-formed MPTCP option, or an option that cannot be encoded."""


class PacketError(MbtestError, ValueError):
    """Bytes that are not a well-formed IPv4/IPv6/TCP packet."""


class CaptureError(MbtestError):
    """A capture file that is missing, empty, truncated or not a pcap/pcapng file."""


class EnvironmentProblem(MbtestError):
    """The machine cannot run the job: not root, MPTCP disabled, a tool missing."""

    exit_code = HARNESS


class Stopped(KeyboardInterrupt):
    """A signal asked the run to stop. A KeyboardInterrupt, so that no ``except Exception``
    on the way swallows it and event loops (asyncio, inside pyroute2) pass it on instead of
    logging it; every owner tears down what it made."""

    exit_code = INTERRUPTED


class Interrupted(Stopped):
    """SIGINT (Ctrl-C)."""

    exit_code = INTERRUPTED


class Terminated(Stopped):
    """SIGTERM."""

    exit_code = TERMINATED
