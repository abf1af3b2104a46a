"""A guest on another kernel: QEMU's microvm machine under software emulation (TCG), the
kernel booted directly with its own small initramfs, the host's root shared read-only over
virtiofs (so the guest runs the project's own Python and venv) and an exchange folder
shared read-write (the command in, its output and exit status out: QEMU's own status says
nothing about the guest's command).

QEMU and its virtiofsd processes run inside a network namespace the run owns, so they are
owned like namespaces are: removing the namespace ends them, on success, error, Ctrl-C,
SIGTERM, and by ``mbtest cleanup`` when their owner died. Every step has a deadline; a
guest that does not finish is an error naming the console's last lines.
"""

from __future__ import annotations

import contextlib
import os
import shlex
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from mbtest.errors import EnvironmentProblem, HarnessError
from mbtest.host import netns, owners, signals
from mbtest.host.kernels import Kernel

QEMU = "qemu-system-x86_64"
VIRTIOFSD = ("/usr/lib/qemu/virtiofsd", "/usr/libexec/virtiofsd", "/usr/bin/virtiofsd")


class GuestError(HarnessError):
    """A guest that did not boot or did not finish, with the console's last lines."""


@dataclass
class GuestResult:
    exit_code: int
    stdout: str
    stderr: str
    console: str
    seconds: float


def tools() -> tuple[str, str]:
    """QEMU and virtiofsd, or one sentence saying what to install."""
    qemu = shutil.which(QEMU)
    daemon = next((p for p in VIRTIOFSD if os.access(p, os.X_OK)), None)
    if qemu is None or daemon is None:
        raise EnvironmentProblem(
            "guests need QEMU and its virtiofsd: apt-get install qemu-system-x86 (make setup)"
        )
    return qemu, daemon


def host_khz() -> int | None:
    """The host's TSC frequency in kHz: the guest's clock calibration (its own takes long
    and goes wrong under emulation)."""
    try:
        with open("/proc/cpuinfo") as f:
            for line in f:
                if line.startswith("cpu MHz"):
                    return int(float(line.split(":")[1]) * 1000)
    except (OSError, ValueError):
        pass
    return None


def qemu_argv(
    qemu: str, kernel: Kernel, state: Path, memory_mb: int, nics: list[tuple[str, str]]
) -> list[str]:
    """The guest's machine: microvm, one CPU, memory shared with the virtiofs daemons, a
    virtio-net NIC per (tap in this namespace, hardware address): eth0, eth1... inside."""
    khz = host_khz()
    append = "console=ttyS0 quiet panic=-1" + (f" tsc_early_khz={khz}" if khz else "")
    argv = [
        qemu, "-M", "microvm,accel=tcg,memory-backend=mem", "-cpu", "max", "-smp", "1",
        "-m", str(memory_mb), "-nodefaults", "-no-user-config", "-nographic", "-no-reboot",
        "-serial", f"file:{state / 'console.log'}", "-monitor", "none",
        "-global", "virtio-mmio.force-legacy=false",
        "-object", f"memory-backend-memfd,id=mem,size={memory_mb}M,share=on",
        "-chardev", f"socket,id=root,path={state / 'root.sock'}",
        "-device", "vhost-user-fs-device,chardev=root,tag=root",
        "-chardev", f"socket,id=exchange,path={state / 'exchange.sock'}",
        "-device", "vhost-user-fs-device,chardev=exchange,tag=exchange",
        "-kernel", str(kernel.vmlinuz), "-initrd", str(kernel.initramfs), "-append", append,
    ]  # fmt: skip
    for i, (tap, mac) in enumerate(nics):
        argv += ["-netdev", f"tap,id=n{i},ifname={tap},script=no,downscript=no,vnet_hdr=off",
                 "-device", f"virtio-net-device,netdev=n{i},mac={mac}"]  # fmt: skip
    return argv


def command_script(argv: list[str], cwd: str) -> str:
    path = os.environ.get("PATH", "/usr/local/bin:/usr/bin:/bin:/usr/sbin:/sbin")
    return (
        f"export PATH={shlex.quote(path)} HOME=/root\ncd {shlex.quote(cwd)}\n{shlex.join(argv)}\n"
    )


class Guest:
    """One VM: its virtiofs daemons and QEMU, started inside namespace ``ns`` (where its
    taps are), its files in ``state`` (console, sockets, the exchange folder). Removing the
    namespace ends them all; ``stop`` does it for a namespace that stays."""

    def __init__(self, kernel: Kernel, ns: str, state: Path, script: str,
                 nics: list[tuple[str, str]] = (), memory_mb: int = 512):  # fmt: skip
        self.kernel, self.ns, self.state, self.nics = kernel, ns, state, list(nics)
        self.memory_mb = memory_mb
        self.exchange = state / "exchange"
        self.exchange.mkdir(parents=True, exist_ok=True)
        (self.exchange / "command.sh").write_text(script)
        self.processes: list[subprocess.Popen] = []
        self.qemu: subprocess.Popen | None = None

    def start(self) -> None:
        qemu, daemon = tools()
        for tag, source in (("root", "/"), ("exchange", str(self.exchange))):
            socket_path = self.state / f"{tag}.sock"
            argv = [daemon, f"--socket-path={socket_path}", "-o", f"source={source}",
                    "-o", "cache=none", "-o", "sandbox=chroot"]  # fmt: skip
            with open(self.state / f"virtiofsd-{tag}.log", "wb") as log:
                self.processes.append(
                    netns.popen(self.ns, argv, stdout=subprocess.DEVNULL, stderr=log)
                )
        deadline = time.monotonic() + 10
        while not all((self.state / f"{t}.sock").exists() for t in ("root", "exchange")):
            signals.check()
            if any(p.poll() is not None for p in self.processes):
                raise GuestError(f"virtiofsd stopped: {self._logged('virtiofsd-root.log')}")
            if time.monotonic() > deadline:
                raise GuestError("virtiofsd did not open its sockets within 10 s")
            time.sleep(0.02)
        argv = qemu_argv(qemu, self.kernel, self.state, self.memory_mb, self.nics)
        with open(self.state / "qemu.log", "wb") as log:
            self.qemu = netns.popen(self.ns, argv, stdout=subprocess.DEVNULL, stderr=log)
        self.processes.append(self.qemu)

    def _logged(self, name: str) -> str:
        lines = _read(self.state / name).strip().splitlines()
        return " | ".join(lines[-2:]) if lines else "(nothing said)"

    def running(self) -> bool:
        return self.qemu is None or self.qemu.poll() is None

    def wait_for(self, name: str, timeout: float) -> None:
        """Until the guest writes ``name`` in the exchange folder (see ``await_file``)."""
        who = f"the guest on {self.kernel.release}"
        await_file(self.exchange / name, timeout, self.state, who, "get ready", self.running)

    def stop(self) -> None:
        """End QEMU and the daemons (reaped)."""
        for process in self.processes:
            with contextlib.suppress(Exception):
                process.kill()
                process.wait(2)
            if process.stderr:
                process.stderr.close()
        self.processes.clear()


def await_file(
    path: Path, timeout: float, state: Path, who: str, doing: str, running: Callable[[], bool]
) -> None:
    """Until ``path`` exists; GuestError naming what the guest (files in ``state``) last
    said if it stops running or the deadline passes first."""
    end = time.monotonic() + timeout
    while not path.exists():
        signals.check()
        if not running():
            raise GuestError(f"{who} stopped: {why(state)}")
        if time.monotonic() > end:
            raise GuestError(f"{who} did not {doing} within {timeout:.0f} s: {why(state)}")
        time.sleep(0.02)


def own_record(kernel: Kernel, node: str) -> tuple[owners.Owner, str]:
    """A record of its own for a VM of ``kernel`` and its namespace's name (saved before
    the namespace exists, so that cleanup finds it whatever happens next)."""
    owner = owners.Owner(owners.new_run_id(), "vm", about={"kernel": kernel.release})
    ns = netns.ns_name(owner.run_id, node)
    owner.namespaces[node] = ns
    owner.save()
    return owner, ns


def end(ns: str, guest: Guest | None, owner: owners.Owner | None) -> None:
    """End a VM: its namespace (QEMU and the daemons in it), its processes reaped, and
    with its own record, its folders and the record (kept if the namespace stayed: mbtest
    cleanup finds it). No signal cuts it short."""
    with signals.deferred():
        removed = True
        try:
            netns.remove(ns)
        except Exception:
            removed = False
        if guest is not None:
            guest.stop()
        if owner is not None and removed:
            for folder in owner.folders:
                shutil.rmtree(folder, ignore_errors=True)
            owner.forget()


def run(
    kernel: Kernel,
    argv: list[str],
    timeout: float = 180.0,
    memory_mb: int = 512,
    cwd: str | None = None,
) -> GuestResult:
    """Boot the kernel, run ``argv`` in the host's root (read-only, /tmp and /run in
    memory), return its exit status and output. GuestError when the guest does not boot or
    finish within ``timeout`` seconds (its console's last lines said)."""
    tools()
    netns.require_root()
    started = time.monotonic()
    owner, ns = own_record(kernel, "guest")
    guest = None
    try:
        state = Path(owner.state_folder())
        netns.create(ns)
        guest = Guest(kernel, ns, state, command_script(argv, cwd or os.getcwd()), [], memory_mb)
        guest.start()
        try:
            guest.wait_for("exit", max(1.0, started + timeout - time.monotonic()))
        except GuestError:
            if not (guest.exchange / "exit").exists():
                raise
        said = _read(guest.exchange / "exit").strip()
        if not said.isdigit():
            raise GuestError(f"the guest on {kernel.release} wrote no exit status: {said[:40]!r}")
        return GuestResult(
            exit_code=int(said),
            stdout=_read(guest.exchange / "stdout"),
            stderr=_read(guest.exchange / "stderr"),
            console=_read(state / "console.log"),
            seconds=time.monotonic() - started,
        )
    finally:
        end(ns, guest, owner)


def why(state: Path) -> str:
    """What a guest whose files are in ``state`` last said: its console's last lines,
    QEMU's last word, its command's last error lines."""
    said = _read(state / "exchange" / "stderr").strip().splitlines()[-2:]
    qemu = _read(state / "qemu.log").strip().splitlines()[-1:]
    return (
        f"console: {_tail(state)}"
        + (f"; QEMU: {qemu[0][:200]}" if qemu else "")
        + (f"; stderr: {' | '.join(said)}" if said else "")
    )


def _read(path: Path, limit: int = 1 << 20) -> str:
    try:
        with open(path, "rb") as f:
            return f.read(limit).decode(errors="replace")
    except OSError:
        return ""


def _tail(state: Path, lines: int = 5) -> str:
    """The console's last lines; a kernel panic's own line first (its stack trace follows
    it and would push it out of the tail)."""
    text = _read(state / "console.log").strip().splitlines()
    if not text:
        return "(nothing: it did not boot)"
    panic = next((line.strip() for line in text if "Kernel panic" in line), None)
    tail = " | ".join(text[-lines:])
    return f"{panic} ... {tail}" if panic and panic not in tail else tail
