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
import sys
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from mbtest.errors import EnvironmentProblem, MbtestError
from mbtest.host import exits, signals

PREFIX = "mbt-"
NETNS_DIR = "/run/netns"
CLONE_NEWNET = 0x40000000
MS_BIND, MS_REC, MS_SHARED = 4096, 16384, 1 << 20  # mount(2) flags
MNT_DETACH = 2  # umount2(2)
T = TypeVar("T")
_inside = threading.local()  # the namespace a call_in thread entered

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
    call_in(None, _create, name)


def _create(name: str) -> None:
    """What ``ip netns add`` does, from a throwaway thread (a network namespace belongs to a
    thread, so the process stays where it is): a shared /run/netns, a new namespace for
    the thread, bound to /run/netns/NAME."""
    os.makedirs(NETNS_DIR, exist_ok=True)
    shared = _libc.mount(b"", NETNS_DIR.encode(), b"none", MS_SHARED | MS_REC, None) == 0
    if not shared:  # /run/netns is no mount point yet: bind it onto itself first
        folder = NETNS_DIR.encode()
        if _libc.mount(folder, folder, b"none", MS_BIND | MS_REC, None) != 0:
            _fail("mount", NETNS_DIR)
        if _libc.mount(b"", folder, b"none", MS_SHARED | MS_REC, None) != 0:
            _fail("share", NETNS_DIR)
    path = os.path.join(NETNS_DIR, name)
    os.close(os.open(path, os.O_RDONLY | os.O_CREAT | os.O_EXCL, 0))
    try:
        if _libc.unshare(CLONE_NEWNET) != 0:
            _fail("unshare a network namespace for", name)
        source = b"/proc/thread-self/ns/net"
        if _libc.mount(source, path.encode(), b"none", MS_BIND, None) != 0:
            _fail("bind", path)
    except BaseException:
        os.unlink(path)
        raise


def _fail(what: str, where: str) -> None:
    err = ctypes.get_errno()
    raise EnvironmentProblem(f"cannot {what} {where}: {os.strerror(err)}")


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
    path = os.path.join(NETNS_DIR, name)
    _libc.umount2(path.encode(), MNT_DETACH)
    with contextlib.suppress(FileNotFoundError):
        os.unlink(path)
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
def call_in(
    name: str | None, fn: Callable[..., T], *args: Any, timeout: float = 30.0, **kwargs: Any
) -> T:
    """Run fn(*args) in a thread that has entered namespace ``name`` (None: a thread of its
    own, in this process's namespace); return its result. Called from such a thread for
    the same namespace, it runs fn right there (a batch of operations, one thread)."""
    if name is not None and getattr(_inside, "name", None) == name:
        return fn(*args, **kwargs)
    box: dict[str, Any] = {}

    def runner() -> None:
        try:
            if name is not None:
                _setns(name)
                _inside.name = name
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
    sysctls(name, {key: value})


def sysctls(name: str, values: dict[str, str | int]) -> None:
    """Write several sysctls from inside the namespace, in order, in one visit."""

    def write() -> None:
        for key, value in values.items():
            try:
                with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                    f.write(str(value))
            except FileNotFoundError:
                raise EnvironmentProblem(f"this kernel has no sysctl {key}") from None

    call_in(name, write)


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


class Forked:
    """A function run in a forked child inside a namespace, with Popen's interface (poll,
    wait, send_signal, kill, returncode, stdout and stderr pipes). Forking a process that
    has the code loaded starts in milliseconds where a fresh interpreter takes most of a
    second; only a single-threaded process may fork (see ``can_fork``)."""

    def __init__(self, name: str, fn: Callable[[], int]):
        out_r, out_w = os.pipe()
        err_r, err_w = os.pipe()
        self.returncode: int | None = None
        for stream in (sys.stdout, sys.stderr):  # nothing buffered is written twice
            with contextlib.suppress(Exception):
                stream.flush()
        self.pid = os.fork()
        if self.pid == 0:  # the child: never returns into the caller's frames
            code = 1
            try:
                os.setsid()
                _setns(name)
                os.dup2(out_w, 1)
                os.dup2(err_w, 2)
                for fd in (out_r, out_w, err_r, err_w):
                    os.close(fd)
                sys.stdout = open(1, "w", closefd=False)  # noqa: SIM115 (the parent may capture it)
                sys.stderr = open(2, "w", closefd=False)  # noqa: SIM115
                signal.signal(signal.SIGTERM, signal.SIG_DFL)
                signal.signal(signal.SIGINT, signal.SIG_DFL)
                code = fn()
            except BaseException as e:  # said on stderr, as a process would
                with contextlib.suppress(Exception):
                    os.write(2, f"{type(e).__name__}: {e}\n".encode())
            finally:
                with contextlib.suppress(Exception):
                    sys.stdout.flush()
                    sys.stderr.flush()
                os._exit(code)
        os.close(out_w)
        os.close(err_w)
        self.stdout = os.fdopen(out_r, "rb", buffering=0)
        self.stderr = os.fdopen(err_r, "rb")

    def poll(self) -> int | None:
        if self.returncode is None:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                self.returncode = os.waitstatus_to_exitcode(status)
        return self.returncode

    def wait(self, timeout: float | None = None) -> int:
        deadline = None if timeout is None else time.monotonic() + timeout
        while self.poll() is None:
            left = 1.0 if deadline is None else deadline - time.monotonic()
            if left <= 0:
                raise subprocess.TimeoutExpired(f"pid {self.pid}", timeout or 0)
            if not exits.wait_exited([self.pid], min(left, 1.0)):
                time.sleep(0.005)  # (no pidfd: poll)
        return self.returncode  # type: ignore[return-value]

    def send_signal(self, sig: int) -> None:
        if self.poll() is None:
            os.kill(self.pid, sig)

    def kill(self) -> None:
        self.send_signal(signal.SIGKILL)


def can_fork() -> bool:
    """Whether forking is safe here: one thread only (a lock another thread holds would
    stay held forever in the child)."""
    return threading.active_count() == 1
