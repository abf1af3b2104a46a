"""Cell processes started from a warm fork server.

A fresh interpreter spends most of a second importing the cell's code (netlink, the codec,
the verdict rules) before it builds anything; a matrix of a hundred cells paid that a
hundred times. Cells are instead forked from a server process that imported the code once
(``multiprocessing``'s forkserver): each cell is still its own process with its own
namespaces, signals and owner record, so a stuck or crashed cell never takes the others
with it, and it carries nothing from another cell (the server never runs one itself).

``MBTEST_CELL_START=interpreter`` starts each cell as a fresh ``python -m`` instead: the
slow path, kept so that the benchmark can check both give the same verdicts.
"""

from __future__ import annotations

import multiprocessing
import os
import select
import signal
import subprocess
import sys
from typing import Protocol

PRELOAD = ["mbtest.experiment.preload"]
STOP_SIGNALS = {signal.SIGINT, signal.SIGTERM}
_context: multiprocessing.context.BaseContext | None = None


class CellProcess(Protocol):
    pid: int

    def poll(self) -> int | None: ...
    def wait(self, timeout: float) -> int | None: ...
    def terminate(self) -> None: ...
    def kill(self) -> None: ...
    def error(self) -> str: ...
    def sentinel(self) -> int | None: ...


def wait_any(procs: list[CellProcess], timeout: float) -> None:
    """Return as soon as one of ``procs`` has ended, or after ``timeout`` seconds: the next
    cell starts the moment a slot frees rather than at the next tick of a poll."""
    fds = [fd for p in procs if (fd := p.sentinel()) is not None]
    if len(fds) < len(procs):  # one has no descriptor to wait on (it never started)
        return
    select.select(fds, [], [], timeout)


def start(scenario_file: str, folder: str) -> CellProcess:
    """Start one cell: ``python -m mbtest.experiment.cell SCENARIO FOLDER`` in effect. A
    cell that cannot be started is a process that failed at once, saying why."""
    try:
        if os.environ.get("MBTEST_CELL_START") == "interpreter":
            return _Interpreter(scenario_file, folder)
        return _Forked(scenario_file, folder)
    except (OSError, EOFError, ValueError) as e:  # the server went away (the run is ending)
        return NotStarted(f"the cell could not be started: {type(e).__name__}: {e}")


def warm() -> None:
    """Start the fork server now (it imports the cell code once): the first cell then
    starts as fast as the others."""
    if os.environ.get("MBTEST_CELL_START") != "interpreter":
        from multiprocessing import forkserver

        _forkserver()
        # The server (and multiprocessing's resource tracker) start with SIGINT and SIGTERM
        # ignored (a disposition that survives exec): a Ctrl-C to the process group must
        # stop the cells, not kill the server under them; it ends when this process does.
        # Here the signals are blocked meanwhile, so one that comes is delivered afterwards.
        blocked = signal.pthread_sigmask(signal.SIG_BLOCK, STOP_SIGNALS)
        handlers = {sig: signal.signal(sig, signal.SIG_IGN) for sig in STOP_SIGNALS}
        try:
            forkserver.ensure_running()
        finally:
            for sig, handler in handlers.items():
                signal.signal(sig, handler)
            signal.pthread_sigmask(signal.SIG_SETMASK, blocked)


def _forkserver():
    global _context
    if _context is None:
        _context = multiprocessing.get_context("forkserver")
        _context.set_forkserver_preload(PRELOAD)
    return _context


def _cell_main(
    scenario_file: str, folder: str, stderr_path: str, cwd: str, environ: dict[str, str]
) -> None:
    """The forked child: the matrix's folder and environment (the server's may be older),
    stderr to a file the matrix reads, then the cell's own main."""
    for sig in STOP_SIGNALS:  # (ignored in the server; cell.main installs its handlers)
        signal.signal(sig, signal.SIG_DFL)
    os.chdir(cwd)
    os.environ.clear()
    os.environ.update(environ)
    fd = os.open(stderr_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o644)
    os.dup2(fd, 2)
    os.close(fd)
    null = os.open(os.devnull, os.O_WRONLY)
    os.dup2(null, 1)
    os.close(null)
    from mbtest.experiment import cell

    code = cell.main([scenario_file, folder])
    sys.stderr.flush()
    os._exit(code)  # no multiprocessing atexit work: the cell has torn down what it made


class _Forked:
    def __init__(self, scenario_file: str, folder: str):
        self._stderr = os.path.join(folder, ".cell-stderr")
        self.process = _forkserver().Process(
            target=_cell_main,
            args=(scenario_file, folder, self._stderr, os.getcwd(), dict(os.environ)),
            daemon=False,
        )
        self.process.start()
        self.pid = self.process.pid

    def poll(self) -> int | None:
        return self.process.exitcode

    def sentinel(self) -> int | None:
        return self.process.sentinel  # readable once the exit status is known

    def wait(self, timeout: float) -> int | None:
        self.process.join(timeout)
        return self.process.exitcode

    def terminate(self) -> None:
        if self.process.exitcode is None:
            self.process.terminate()

    def kill(self) -> None:
        if self.process.exitcode is None:
            self.process.kill()

    def error(self) -> str:
        try:
            with open(self._stderr, errors="replace") as f:
                text = f.read().strip()
            os.unlink(self._stderr)
        except OSError:
            return ""
        return text


class _Interpreter:
    def __init__(self, scenario_file: str, folder: str):
        argv = [sys.executable, "-m", "mbtest.experiment.cell", scenario_file, folder]
        self.proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.pid = self.proc.pid
        try:
            self._pidfd: int | None = os.pidfd_open(self.pid)
        except OSError:
            self._pidfd = None

    def sentinel(self) -> int | None:
        return self._pidfd  # readable once it has exited

    def poll(self) -> int | None:
        code = self.proc.poll()
        if code is not None and self._pidfd is not None:
            os.close(self._pidfd)
            self._pidfd = None
        return code

    def wait(self, timeout: float) -> int | None:
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            return None

    def terminate(self) -> None:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)

    def kill(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()

    def error(self) -> str:
        if self.proc.stderr is None:
            return ""
        text = self.proc.stderr.read().decode(errors="replace").strip()
        self.proc.stderr.close()
        return text


class NotStarted:
    def __init__(self, why: str):
        self.pid = 0
        self.why = why

    def poll(self) -> int | None:
        return 1

    def sentinel(self) -> int | None:
        return None

    def wait(self, timeout: float) -> int | None:
        return 1

    def terminate(self) -> None:
        pass

    def kill(self) -> None:
        pass

    def error(self) -> str:
        return self.why
