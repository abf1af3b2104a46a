"""The native fast path (native/nfq_fast.c, libnetfilter_queue) for behaviours that touch
every packet: same flow semantics and log lines as the Python engine, which stays the
reference (MBTEST_NATIVE=0 keeps it)."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import select
import shutil
import subprocess

from mbtest.errors import MbtestError
from mbtest.host import exits
from mbtest.middlebox.base import Behaviour

SOURCE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native", "nfq_fast.c")
IN_TREE = os.path.join(os.path.dirname(SOURCE), "mbtest-nfq-fast")  # make setup builds it
LIBRARIES = ("-lnetfilter_queue", "-lnfnetlink")
_found: tuple[str | None, str | None] | None = None


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "mbtest", "native")


def binary() -> tuple[str | None, str | None]:
    """The fast path's executable and None, or None and why there is none. Found next to
    its source (make setup), or built on first use into the user's cache folder (named by
    the source's hash: a newer mbtest builds its own), once, under a lock: an installed
    package needs no build step of its own."""
    global _found
    if _found is None:
        _found = _locate()
    return _found


def _locate() -> tuple[str | None, str | None]:
    if os.access(IN_TREE, os.X_OK) and os.path.getmtime(IN_TREE) >= os.path.getmtime(SOURCE):
        return IN_TREE, None
    with open(SOURCE, "rb") as f:
        digest = hashlib.sha256(f.read()).hexdigest()[:12]
    folder = cache_dir()
    built = os.path.join(folder, f"mbtest-nfq-fast-{digest}")
    if os.access(built, os.X_OK):
        return built, None
    compiler = shutil.which(os.environ.get("CC", "gcc"))
    if compiler is None:
        return None, "no C compiler (gcc) to build it"
    try:
        os.makedirs(folder, exist_ok=True)
        with open(os.path.join(folder, ".lock"), "w") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # parallel cells build it once
            if os.access(built, os.X_OK):
                return built, None
            partial = f"{built}.{os.getpid()}.tmp"
            argv = [compiler, "-O2", "-o", partial, SOURCE, *LIBRARIES]
            done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
            if done.returncode != 0:
                with contextlib.suppress(OSError):
                    os.unlink(partial)
                first = (done.stderr.strip().splitlines() or ["unknown error"])[0]
                return None, f"building it failed ({first}; is libnetfilter-queue-dev installed?)"
            os.replace(partial, built)
    except (OSError, subprocess.TimeoutExpired) as e:
        return None, f"building it in {folder} failed: {e}"
    return built, None


def argv(behaviour: Behaviour, queue: int, log_path: str) -> list[str] | None:
    """The fast path's command line, when it implements this behaviour and is there
    (MBTEST_NATIVE=0 keeps the Python engine, the reference)."""
    args = behaviour.native_args()
    if args is None or os.environ.get("MBTEST_NATIVE") == "0":
        return None
    path, _ = binary()
    if path is None:
        return None
    return [path, "--queue", str(queue), "--log", log_path, "--behaviour", behaviour.NAME, *args]


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
    exits.wait_exited([proc.pid], 5)  # (woken at its exit; wait() then reaps)
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()
