"""SIGINT and SIGTERM become exceptions in the main thread, so that every ``with`` owner
(testbeds, captures, firewall rules) removes what it made on the way out."""

from __future__ import annotations

import os
import signal

from mbtest.errors import Interrupted, Terminated

_MAIN_PID = os.getpid()


def _on_signal(signum, frame) -> None:
    if os.getpid() != _MAIN_PID:  # a forked helper (pyroute2 makes some): just go
        os._exit(128 + signum)
    if signum == signal.SIGINT:
        raise Interrupted("interrupted; everything this run created was removed")
    raise Terminated("terminated by SIGTERM; everything this run created was removed")


def install() -> None:
    """Called once by each entry point (the CLI, a matrix cell)."""
    global _MAIN_PID
    _MAIN_PID = os.getpid()
    signal.signal(signal.SIGTERM, _on_signal)
    signal.signal(signal.SIGINT, _on_signal)
