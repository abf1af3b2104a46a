"""Middlebox processes owned by a testbed: started in a slot, checked, stopped."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import subprocess
import sys
import time

from mbtest.errors import MbtestError
from mbtest.host import exits, netns, signals
from mbtest.middlebox.spec import MiddleboxSpec


class MiddleboxCrashed(MbtestError):
    """The middlebox process died or never started: not a network failure."""


class MiddleboxProcess:
    def __init__(
        self,
        ns: str,
        slot: str,
        spec: MiddleboxSpec,
        queue: int,
        log_path: str,
        sides: dict[str, str],
    ):
        self.ns, self.slot, self.spec, self.queue = ns, slot, spec, queue
        self.log_path, self.sides = log_path, sides
        self.proc: subprocess.Popen | netns.Forked | None = None
        self.exit_code: int | None = None
        self.error: str | None = None
        self.asked = False

    def start(self, timeout: float = 10.0) -> None:
        argv = [sys.executable, "-m", "mbtest.middlebox", self.spec.text]
        argv += ["--queue", str(self.queue), "--log", self.log_path]
        argv += ["--client-side", self.sides["client"], "--server-side", self.sides["server"]]
        env = dict(
            os.environ,
            PYTHONPATH=os.pathsep.join(
                filter(None, [_package_root(), os.environ.get("PYTHONPATH")])
            ),
        )
        if netns.can_fork() and os.environ.get("MBTEST_MIDDLEBOX_START") != "interpreter":
            from mbtest.middlebox.__main__ import main  # (loaded once, in the parent)

            self.proc = netns.Forked(self.ns, lambda: main(argv[3:]))
        else:  # a fresh interpreter: from a threaded parent, or when asked for
            self.proc = netns.popen(
                self.ns, argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env
            )
        deadline = time.monotonic() + timeout
        line = b""
        while b"ready" not in line:
            signals.check()
            left = deadline - time.monotonic()
            if self.proc.poll() is not None or left <= 0:
                self.stop()
                raise MiddleboxCrashed(f"{self.what} crashed: {self.error or 'it did not start'}")
            ready, _, _ = select.select([self.proc.stdout], [], [], left)
            if ready:
                line += os.read(self.proc.stdout.fileno(), 100)

    @property
    def what(self) -> str:
        return f"middlebox {self.spec.name} in {self.slot}"

    def check(self) -> str | None:
        """None while it runs; else why it stopped."""
        if self.proc is None or self.proc.poll() is None:
            return None
        self.stop()
        return f"{self.what} crashed: {self.error or f'exit {self.exit_code}'}"

    def ask_to_stop(self) -> None:
        """Tell it to stop (it removes its rules, flushes its log); ``stop`` then waits.
        Telling every middlebox first lets them all finish at once."""
        if self.proc is not None and not self.asked:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGTERM)
            self.asked = True  # once: a second SIGTERM could cut its cleanup short

    def stop(self, timeout: float = 5.0) -> None:
        if self.proc is None:
            return
        self.ask_to_stop()
        exits.wait_exited([self.proc.pid], timeout)  # (woken at its exit; wait() then reaps)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        err = self.proc.stderr.read().decode(errors="replace").strip() if self.proc.stderr else ""
        self.error = err.splitlines()[-1] if err else self.error
        self.exit_code = self.proc.returncode
        for stream in (self.proc.stdout, self.proc.stderr):
            if stream:
                stream.close()
        self.proc = None
        self.asked = False


def _package_root() -> str:
    import mbtest

    return os.path.dirname(os.path.dirname(os.path.abspath(mbtest.__file__)))
