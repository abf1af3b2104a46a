"""Network namespaces: create, enter for one call, start processes inside, remove.

Only the calling *thread* enters a namespace (setns is per task on Linux), and it does so in
a short-lived helper thread: sockets made there stay in the namespace and can be used from
any thread, while the main thread never leaves the root namespace.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mbtest.errors import EnvironmentProblem, MbtestError
from mbtest.host import signals

PREFIX = "mbt-"
NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
T = TypeVar("T")

_libc = ctypes.CDLL(None, use_errno=True)


def ns_name(run_id: str, node: str) -> str:
    return f"{PREFIX}{run_id}-{node}"


def _setns(name: str) -> None:
    fd = os.open(os.path.join(NETNS_DIR, name), os.O_RDONLY | os.O_CLOEXEC)
    try:
        if _libc.setns(fd, CLONE_NEWNET) != 0:
            err = ctypes.get_errno()
            raise OSError(err, f"setns into {name}: {os.strerror(err)}")
    finally:
        os.close(fd)


def enter(name: str) -> None:
    """Move the calling thread into a namespace for good (a CLI run from a testbed node)."""
    if not exists(name):
        raise MbtestError(f"namespace {name} does not exist")
    _setns(name)


def require_root() -> None:
    if os.geteuid() != 0:
        raise EnvironmentProblem("mbtest needs root for network namespaces: run it with sudo")


def exists(name: str) -> bool:
    return os.path.exists(os.path.join(NETNS_DIR, name))


def listed(prefix: str = PREFIX) -> list[str]:
    """Namespaces whose name starts with prefix."""
    try:
        return sorted(n for n in os.listdir(NETNS_DIR) if n.startswith(prefix))
    except FileNotFoundError:
        return []


@signals.critical
def create(name: str) -> None:
    require_root()
    if exists(name):
        raise MbtestError(f"network namespace {name} already exists")
    from pyroute2 import netns as pyroute2_netns  # (heavy: loaded when a testbed is built)

    pyroute2_netns.create(name)


def pids(name: str) -> list[int]:
    """Processes whose network namespace is this one."""
    target = os.stat(os.path.join(NETNS_DIR, name)).st_ino
    found = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            if os.stat(f"/proc/{entry}/ns/net").st_ino == target:
                found.append(int(entry))
        except OSError:
            continue
    return found


@signals.critical
def remove(name: str, grace: float = 1.0) -> list[int]:
    """Kill every process in the namespace, then delete it; returns the pids killed."""
    if not exists(name):
        return []
    victims = [p for p in pids(name) if p != os.getpid()]
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in victims:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, sig)
        deadline = time.monotonic() + grace
        while time.monotonic() < deadline and any(alive(p) for p in victims):
            time.sleep(0.02)
    from pyroute2 import netns as pyroute2_netns

    pyroute2_netns.remove(name)
    return victims


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie does not)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(OSError), open(f"/proc/{pid}/stat") as f:
        return f.read().split(")")[-1].split()[0] != "Z"
    return False


@signals.critical
def call_in(name: str, fn: Callable[..., T], *args: Any, timeout: float = 30.0, **kwargs: Any) -> T:
    """Run fn(*args) in a thread that has entered namespace ``name``; return its result."""
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            _setns(name)
            box["result"] = fn(*args, **kwargs)
        except BaseException as e:  # re-raised in the caller's thread
            box["error"] = e

    thread = threading.Thread(target=runner, name=f"netns:{name}", daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        raise MbtestError(f"an operation in namespace {name} did not finish in {timeout:g} s")
    if "error" in box:
        raise box["error"]
    return box["result"]


def sysctl(name: str, key: str, value: str | int) -> None:
    """Write a sysctl (dotted key) from inside the namespace."""
    path = "/proc/sys/" + key.replace(".", "/")

    def write() -> None:
        with open(path, "w") as f:
            f.write(str(value))

    try:
        call_in(name, write)
    except FileNotFoundError:
        raise EnvironmentProblem(f"this kernel has no sysctl {key}") from None


def read_proc_net(name: str, file: str) -> str:
    """/proc/net/<file> as the namespace sees it (thread-self: per-thread netns)."""

    def read() -> str:
        with open(f"/proc/thread-self/net/{file}") as f:
            return f.read()

    return call_in(name, read)


@signals.critical
def popen(name: str, argv: Sequence[str], **kwargs: Any) -> subprocess.Popen:
    """Start a process inside the namespace, in its own process group."""
    return subprocess.Popen(
        list(argv), preexec_fn=lambda: _setns(name), start_new_session=True, **kwargs
    )
