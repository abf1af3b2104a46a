"""SIGINT and SIGTERM become exceptions in the main thread, so that every ``with`` owner
(testbeds, captures, firewall rules) removes what it made on the way out.

Removing must not itself be cut short by a second signal: ``deferred()`` marks a critical
section (creating-and-recording, tearing down) during which a signal is only noted; it is
raised when the section ends.
"""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import sys
from collections.abc import Callable, Iterator
from typing import Any, TypeVar

from mbtest.errors import Interrupted, Stopped, Terminated

T = TypeVar("T")
_MAIN_PID = os.getpid()
_depth = 0
_pending: int | None = None
_received: int | None = None  # the first signal, kept: ``check`` raises it again if lost


def _exception(signum: int) -> Stopped:
    if signum == signal.SIGINT:
        return Interrupted("interrupted")
    return Terminated("terminated by SIGTERM")


def _on_signal(signum, frame) -> None:
    global _pending, _received
    if os.getpid() != _MAIN_PID:  # a forked helper (pyroute2 makes some): just go
        os._exit(128 + signum)
    _received = _received or signum
    if _depth or _in_fork_hook(frame):
        _pending = _pending or signum
        return  # raised at the end of the section, or by the next check()
    raise _exception(signum)


def _in_fork_hook(frame) -> bool:
    """Whether the signal interrupted an at-fork hook (logging's lock release after a fork):
    Python would print the exception and drop it there."""
    for _ in range(4):
        if frame is None:
            return False
        if frame.f_globals.get("__name__") == "logging" or frame.f_code.co_name.startswith(
            ("_releaseLock", "_after_at_fork", "_at_fork")
        ):
            return True
        frame = frame.f_back
    return False


def install() -> None:
    """Called once by each entry point (the CLI, a matrix cell)."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
    sys.unraisablehook = _unraisable


def _unraisable(args) -> None:
    """A signal's exception raised inside a finalizer or weakref callback cannot propagate:
    Python would print it as "Exception ignored" with a traceback. It is not lost (the
    signal is kept, and the next ``check`` raises it), so it is not printed; anything else
    goes to the default hook."""
    if args.exc_type is not None and issubclass(args.exc_type, Stopped):
        return
    sys.__unraisablehook__(args)


def done() -> None:
    """The work is over and everything owned released: a signal now would only turn a
    finished run's status into a kill."""
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
    signal.signal(signal.SIGINT, signal.SIG_IGN)


@contextlib.contextmanager
def deferred() -> Iterator[None]:
    """A section no signal interrupts; one that arrived meanwhile is raised at its end
    (unless the section is already ending with an exception of its own)."""
    global _depth, _pending
    _depth += 1
    failed = False
    try:
        yield
    except BaseException:
        failed = True
        raise
    finally:
        _depth -= 1
        if not _depth and _pending is not None and not failed:
            signum, _pending = _pending, None
            raise _exception(signum)


def check() -> None:
    """A checkpoint in long loops: raise the signal that arrived where it could not be raised
    (an at-fork hook), or whose exception was lost (finalizers); nothing inside a deferred
    section, where the run is already stopping."""
    if _received is not None and not _depth:
        raise _exception(_received)


def critical(fn: Callable[..., T]) -> Callable[..., T]:
    """Run a function as a deferred section: for short calls into libraries (netlink, fork,
    event loops) that a signal must not cut in the middle."""

    @functools.wraps(fn)
    def wrapped(*args: Any, **kwargs: Any) -> T:
        with deferred():
            return fn(*args, **kwargs)

    return wrapped


def pending() -> bool:
    """Whether a signal arrived during a deferred section and is still to be raised."""
    return _pending is not None
