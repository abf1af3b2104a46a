"""The native fast path (native/nfq_fast.c, libnetfilter_queue) for behaviours that touch
every packet: same flow semantics and log lines as the Python engine, which stays the
reference (MBTEST_NATIVE=0 keeps it)."""

from __future__ import annotations

import os
import select
import subprocess

from mbtest.errors import MbtestError
from mbtest.middlebox.base import Behaviour

NATIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native", "mbtest-nfq-fast")


def argv(behaviour: Behaviour, queue: int, log_path: str) -> list[str] | None:
    """The fast path's command line, when it implements this behaviour and is built (make
    setup builds it; MBTEST_NATIVE=0 keeps the Python engine, the reference)."""
    args = behaviour.native_args()
    if args is None or os.environ.get("MBTEST_NATIVE") == "0" or not os.access(NATIVE, os.X_OK):
        return None
    return [NATIVE, "--queue", str(queue), "--log", log_path, "--behaviour", behaviour.NAME, *args]


def start(command: list[str], timeout: float = 5.0) -> subprocess.Popen:
    proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        why = proc.stderr.read().strip()
        raise MbtestError(f"the native fast path did not start: {why or 'no answer'}")
    return proc


def stop(proc: subprocess.Popen) -> None:
    """It drains its queue and writes its own counts on SIGTERM."""
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
