"""Waiting for processes by pidfd: woken at the exit, bounded by the timeout."""

import subprocess
import sys
import time

from mbtest.host import exits


def _sleeper(seconds: float) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-c", f"import time; time.sleep({seconds})"])


def test_returns_when_every_process_has_exited():
    quick, slow = _sleeper(0.1), _sleeper(0.4)
    try:
        assert exits.wait_exited([quick.pid, slow.pid], 10)
        assert slow.returncode is None  # not reaped by the wait: the owner's wait() does it
        assert slow.wait(0.05) == 0 and quick.wait(0.05) == 0  # (already ended)
    finally:
        quick.kill(), slow.kill()


def test_times_out_on_a_process_that_keeps_running():
    long = _sleeper(30)
    try:
        started = time.monotonic()
        assert not exits.wait_exited([long.pid], 0.2)
        assert 0.15 < time.monotonic() - started < 5
        assert long.poll() is None
    finally:
        long.kill()
        long.wait()


def test_a_process_already_reaped_counts_as_exited():
    gone = _sleeper(0)
    gone.wait()
    assert exits.wait_exited([gone.pid], 0.5)
