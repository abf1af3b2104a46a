"""Waiting for child processes to end, woken by the kernel rather than by a sleep loop.

``subprocess.Popen.wait(timeout)`` polls with sleeps that grow to 50 ms, so a tcpdump or a
middlebox that ends in 2 ms is noticed up to 50 ms later, and a cell stops four of them.
A pidfd becomes readable the moment its process exits: waiting on several at once costs
exactly as long as the slowest takes.
"""

from __future__ import annotations

import contextlib
import os
import select
import time
from collections.abc import Iterable


def wait_exited(pids: Iterable[int], timeout: float) -> bool:
    """Wait (at most ``timeout`` seconds) until every process in ``pids`` has exited; True
    if they all did. Nothing is reaped: the caller's own wait() then returns at once. A
    pid that is already gone counts as exited."""
    fds = []
    try:
        for pid in pids:
            try:
                fds.append(os.pidfd_open(pid))
            except ProcessLookupError:
                continue  # already reaped
            except OSError:  # no pidfd here: the caller's own wait() polls instead
                return False
        poller = select.poll()
        for fd in fds:
            poller.register(fd, select.POLLIN)
        deadline = time.monotonic() + timeout
        waiting = len(fds)
        while waiting:
            left = deadline - time.monotonic()
            if left <= 0:
                return False
            for fd, _ in poller.poll(left * 1000):
                poller.unregister(fd)
                waiting -= 1
        return True
    finally:
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
