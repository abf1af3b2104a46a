"""Kernels for guest endpoints: Debian's cloud kernel packages, fetched through a private
apt configuration (the machine's own apt setup is never touched), extracted (never
installed), checked for MPTCP, and kept in a cache with a small initramfs of their own.

A cached kernel is a folder named after its release (``uname -r``): the compressed kernel
(``vmlinuz``, booted directly by QEMU's microvm machine), its ``config``, ``initramfs``
(busybox, the virtio, virtio-mmio, virtio-net and virtiofs modules, the guest's init) and
``kernel.json``. A fetch works in a temporary folder and renames it into place, under an
flock that the kernel releases if the fetch is killed: nothing half-made is ever cached.
"""

from __future__ import annotations

import contextlib
import fcntl
import io
import json
import lzma
import os
import re
import shutil
import stat
import subprocess
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from mbtest.errors import EnvironmentProblem, MbtestError

SUITES = ("bookworm", "bookworm-backports", "trixie", "trixie-backports")
PACKAGE = re.compile(r"^linux-image-(?P<release>(?P<version>\d+\.\d+)[0-9.+~a-z-]*?)-cloud-amd64$")
MODULES = (
    "virtio",
    "virtio_ring",
    "virtio_mmio",
    "failover",
    "net_failover",
    "virtio_net",
    "fuse",
    "virtiofs",
)  # fmt: skip  (loaded in this order; missing ones are built in)
KEYRING = "/usr/share/keyrings/debian-archive-keyring.gpg"
APT_TIMEOUT = 300  # seconds for one apt or dpkg-deb command


class KernelError(MbtestError):
    """A kernel that cannot be fetched, found or used, said in one sentence."""


def cache_dir() -> Path:
    """Where kernels are kept (``$MBTEST_KERNEL_CACHE``, else /var/cache/mbtest/kernels)."""
    return Path(os.environ.get("MBTEST_KERNEL_CACHE", "/var/cache/mbtest/kernels"))


@dataclass(frozen=True)
class Kernel:
    release: str  # uname -r
    package: str
    folder: Path

    @property
    def vmlinuz(self) -> Path:
        return self.folder / "vmlinuz"

    @property
    def initramfs(self) -> Path:
        return self.folder / "initramfs"

    @property
    def size(self) -> int:
        return sum(p.stat().st_size for p in self.folder.iterdir() if p.is_file())


# --- choosing a package (pure) ----------------------------------------------------------------


def version_key(text: str) -> tuple:
    """Debian-like ordering of release strings: numbers compare as numbers."""
    parts = re.findall(r"\d+|[a-z]+", text)
    return tuple((0, int(p), "") if p.isdigit() else (1, 0, p) for p in parts)


def choose(wanted: str, packages: list[str]) -> str:
    """The package a user means: an exact package name, an exact release, or a version
    (``6.1``, ``6.12.57``) for the newest release of it; one sentence when none fits."""
    names = sorted({p for p in packages if PACKAGE.match(p)}, key=version_key)
    if wanted in names:
        return wanted
    if f"linux-image-{wanted}" in names:  # (a release as uname -r and kernel ls say it)
        return f"linux-image-{wanted}"
    matching = []
    for name in names:
        release = PACKAGE.match(name)["release"]  # type: ignore[index]
        if release == wanted or re.match(re.escape(wanted) + r"(?![0-9])", release):
            matching.append(name)
    older = re.match(r"(\d+)\.(\d+)", wanted)
    if not matching and older and (int(older[1]), int(older[2])) < (6, 1):
        raise KernelError(
            f"kernel {wanted}: Debian's kernels before 6.1 cannot be endpoints (bullseye's 5.10 "
            "builds have MPTCP compiled out); the oldest offered is 6.1 (bookworm)"
        )
    if not matching:
        versions = sorted({PACKAGE.match(n)["version"] for n in names}, key=version_key)  # type: ignore[index]
        known = ", ".join(versions) or "none (is the Debian mirror reachable?)"
        raise KernelError(
            f"no Debian cloud kernel matches {wanted!r} in {', '.join(SUITES)} (versions: {known})"
        )
    return matching[-1]


def has_mptcp(config: str) -> bool:
    return re.search(r"^CONFIG_MPTCP=y$", config, re.M) is not None


# --- the guest's initramfs (pure) -------------------------------------------------------------

INIT = """#!/bin/busybox sh
# mbtest guest init: load the virtio modules, mount the host's root read-only and the run's
# exchange folder, run the command given there inside the host's root, say how it ended.
/bin/busybox --install -s /bin
mount -t proc proc /proc; mount -t sysfs sys /sys; mount -t devtmpfs dev /dev
for m in {modules}; do [ -f /modules/$m.ko ] && insmod /modules/$m.ko; done
echo "mbtest-guest: $(uname -r) up"
mount -t virtiofs root /host -o ro || {{ echo "mbtest-guest: no host root"; poweroff -f; }}
for d in proc sys dev; do mount --bind /$d /host/$d; done
mount -t tmpfs tmp /host/tmp; mount -t tmpfs run /host/run
mkdir -p /host/run/mbtest-guest
mount -t virtiofs exchange /host/run/mbtest-guest || echo "mbtest-guest: no exchange folder"
ip link set lo up
chroot /host /bin/sh /run/mbtest-guest/command.sh \
  > /host/run/mbtest-guest/stdout 2> /host/run/mbtest-guest/stderr
echo $? > /host/run/mbtest-guest/exit.tmp
mv /host/run/mbtest-guest/exit.tmp /host/run/mbtest-guest/exit
sync
echo "mbtest-guest: done"
poweroff -f
"""


def newc(entries: list[tuple[str, int, bytes]]) -> bytes:
    """A cpio archive in the kernel's initramfs format (newc): (path, mode, data) entries;
    a directory has S_IFDIR in its mode and no data."""
    out = io.BytesIO()
    for number, (path, mode, data) in enumerate([*entries, ("TRAILER!!!", 0, b"")], 1):
        name = path.encode() + b"\0"
        fields = [number, mode, 0, 0, 1, 0, len(data), 0, 0, 0, 0, len(name), 0]
        out.write(b"070701" + b"".join(b"%08X" % f for f in fields) + name)
        out.write(b"\0" * (-(110 + len(name)) % 4))
        out.write(data)
        out.write(b"\0" * (-len(data) % 4))
    return out.getvalue()


def initramfs(busybox: bytes, modules: dict[str, bytes]) -> bytes:
    """The guest's initramfs: busybox, the modules (uncompressed) and the init script."""
    directory, executable, plain = stat.S_IFDIR | 0o755, stat.S_IFREG | 0o755, stat.S_IFREG | 0o644
    entries = [(d, directory, b"") for d in ("bin", "proc", "sys", "dev", "host", "modules")]
    entries.append(("bin/busybox", executable, busybox))
    entries += [(f"modules/{name}.ko", plain, data) for name, data in modules.items()]
    script = INIT.format(modules=" ".join(m for m in MODULES if m in modules))
    entries.append(("init", executable, script.encode()))
    return newc(entries)


def module_data(path: Path) -> bytes:
    """A module file's bytes, decompressed (.ko.xz, .ko.zst, .ko)."""
    raw = path.read_bytes()
    if path.name.endswith(".xz"):
        return lzma.decompress(raw)
    if path.name.endswith(".zst"):
        done = subprocess.run(["zstd", "-dc"], input=raw, capture_output=True, timeout=60)
        if done.returncode != 0:
            raise KernelError(f"cannot decompress {path.name}: zstd says {done.stderr[:200]!r}")
        return done.stdout
    return raw


def find_modules(tree: Path, release: str) -> dict[str, bytes]:
    """The guest's modules in an extracted package (lib/modules or, from 6.12, usr/lib)."""
    found: dict[str, bytes] = {}
    for base in (tree / "lib/modules" / release, tree / "usr/lib/modules" / release):
        if not base.is_dir():
            continue
        for path in base.rglob("*.ko*"):
            name = path.name.split(".ko")[0].replace("-", "_")
            if name in MODULES and name not in found:
                found[name] = module_data(path)
    return found


# --- apt, privately -----------------------------------------------------------------------------


def mirror() -> str:
    """The Debian mirror apt is already configured with (deb822 or one-line sources)."""
    texts = []
    for path in [Path("/etc/apt/sources.list"), *sorted(Path("/etc/apt/sources.list.d").glob("*"))]:
        if path.suffix in (".sources", ".list") and path.is_file():
            with contextlib.suppress(OSError):
                texts.append(path.read_text(errors="replace"))
    found = []
    for text in texts:
        text = "\n".join(line for line in text.splitlines() if not line.lstrip().startswith("#"))
        found += re.findall(
            r"(?:URIs:\s*|^deb\s+(?:\[[^\]]*\]\s+)?)(https?://\S+/debian)/?\s", text + "\n", re.M
        )
    plain = [uri for uri in found if re.fullmatch(r"https?://[^/]+/debian", uri)]
    return (plain or found or ["http://deb.debian.org/debian"])[0]


class Apt:
    """apt with a configuration of its own (sources, lists, cache) inside the kernel cache."""

    def __init__(self, root: Path):
        self.root = root / ".apt"
        for sub in ("lists/partial", "archives/partial"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        keyring = f"[signed-by={KEYRING}] " if os.path.exists(KEYRING) else ""
        sources = "".join(f"deb {keyring}{mirror()} {suite} main\n" for suite in SUITES)
        (self.root / "sources.list").write_text(sources)
        self.options = [
            "-o", f"Dir::Etc::SourceList={self.root / 'sources.list'}",
            "-o", "Dir::Etc::SourceParts=/dev/null",
            "-o", f"Dir::State::Lists={self.root / 'lists'}",
            "-o", f"Dir::Cache={self.root}", "-o", f"Dir::Cache::archives={self.root / 'archives'}",
            "-o", "Dir::State::status=/dev/null", "-o", "Debug::NoLocking=1",
            "-o", "APT::Get::List-Cleanup=0", "-o", "APT::Update::Error-Mode=any", "-q",
        ]  # fmt: skip

    def _run(self, tool: str, *args: str, cwd: Path | None = None) -> str:
        if shutil.which(tool) is None:
            raise EnvironmentProblem(f"{tool} is not installed (a Debian system is needed)")
        try:
            done = subprocess.run([tool, *self.options, *args], capture_output=True, text=True,
                                  timeout=APT_TIMEOUT, cwd=cwd)  # fmt: skip
        except subprocess.TimeoutExpired:
            raise KernelError(f"{tool} {args[0]} took more than {APT_TIMEOUT} s") from None
        if done.returncode != 0:
            last = (done.stderr.strip().splitlines() or ["no reason given"])[-1]
            raise KernelError(f"{tool} {args[0]} failed: {last}")
        return done.stdout

    def update(self, max_age: float = 6 * 3600) -> None:
        """Fetch the package lists, unless fetched less than ``max_age`` seconds ago."""
        stamp = self.root / "updated"
        if stamp.exists() and time.time() - stamp.stat().st_mtime < max_age:
            return
        self._run("apt-get", "update")
        stamp.touch()

    def packages(self) -> list[str]:
        out = self._run("apt-cache", "search", "--names-only", r"^linux-image-.*-cloud-amd64$")
        return [line.split(" ", 1)[0] for line in out.splitlines() if line.strip()]

    def names(self, exact: str) -> list[str]:
        """The packages of exactly this name (none or one)."""
        out = self._run("apt-cache", "search", "--names-only", f"^{re.escape(exact)}$")
        return [line.split(" ", 1)[0] for line in out.splitlines() if line.strip()]

    def download(self, package: str, folder: Path) -> Path:
        self._run("apt-get", "download", package, cwd=folder)
        debs = sorted(folder.glob(f"{package}_*.deb"))
        if not debs:
            raise KernelError(f"apt-get download {package} left no package file")
        return debs[-1]


# --- the cache ----------------------------------------------------------------------------------


@contextlib.contextmanager
def locked(root: Path):
    """The cache's lock: one fetch or removal at a time (released if the process dies)."""
    try:
        root.mkdir(parents=True, exist_ok=True)
        f = open(root / ".lock", "w")  # noqa: SIM115 (closed below)
    except OSError as e:
        raise KernelError(f"the kernel cache {root} cannot be used: {e.strerror}") from None
    with f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise KernelError(f"another mbtest is fetching or removing kernels in {root}") from None
        yield


def cached() -> list[Kernel]:
    out = []
    root = cache_dir()
    if not root.is_dir():
        return out
    for meta in sorted(root.glob("*/kernel.json")):
        try:
            data = json.loads(meta.read_text())
            release, package = data["release"], data["package"]
        except (OSError, ValueError, KeyError, TypeError, RecursionError):
            continue  # (not one of ours, or damaged: left alone)
        if not (isinstance(release, str) and isinstance(package, str) and PACKAGE.match(package)):
            continue
        if not all((meta.parent / f).is_file() for f in ("vmlinuz", "initramfs")):
            continue  # (a damaged entry: fetched again when asked for)
        out.append(Kernel(release, package, meta.parent))
    return sorted(out, key=lambda k: version_key(k.release))


def find(wanted: str) -> Kernel:
    """A cached kernel by release, package name or version (the newest matching)."""
    kernels = cached()
    for kernel in kernels:
        if kernel.release == wanted:
            return kernel
    packages = [k.package for k in kernels]
    try:
        package = choose(wanted, packages)
    except KernelError:
        have = ", ".join(k.release for k in kernels) or "none"
        raise KernelError(
            f"kernel {wanted!r} is not cached (cached: {have}): mbtest kernel fetch {wanted}"
        ) from None
    return next(k for k in kernels if k.package == package)


def fetch(wanted: str, say=lambda text: None) -> Kernel:
    """The kernel a user asks for, fetched into the cache unless it is there already."""
    root = cache_dir()
    with locked(root):
        for stale in root.glob(".fetch-*"):  # (a fetch that was killed: nothing uses it)
            shutil.rmtree(stale, ignore_errors=True)
        apt = Apt(root)
        say("reading the package lists of " + ", ".join(SUITES))
        apt.update()
        package = choose(wanted, apt.packages())
        for kernel in cached():
            if kernel.package == package:
                return kernel
        with tempfile.TemporaryDirectory(dir=root, prefix=".fetch-") as work:
            work_path = Path(work)
            tree = work_path / "tree"
            suffix = package[len("linux-image-") :]
            parts = [package]  # (from 7.x Debian splits the image: its binary and modules)
            if f"linux-binary-{suffix}" in apt.names(f"linux-binary-{suffix}"):
                parts += [f"linux-binary-{suffix}", f"linux-modules-{suffix}"]
                parts += [p for p in apt.names(f"linux-base-{suffix}")]
            for part in parts:
                say(f"downloading {part}")
                deb = apt.download(part, work_path)
                try:
                    subprocess.run(["dpkg-deb", "-x", str(deb), str(tree)], check=True,
                                   capture_output=True, timeout=APT_TIMEOUT)  # fmt: skip
                except (subprocess.CalledProcessError, subprocess.TimeoutExpired) as e:
                    raise KernelError(f"dpkg-deb could not extract {deb.name}: {e}") from None
            return _keep(package, tree, root, work_path)


def _keep(package: str, tree: Path, root: Path, work: Path) -> Kernel:
    moved = tree / "usr/lib/modules"  # (from 7.x: usr/lib/modules/RELEASE/vmlinuz, config)
    images = sorted((tree / "boot").glob("vmlinuz-*")) or sorted(moved.glob("*/vmlinuz"))
    configs = sorted((tree / "boot").glob("config-*")) or sorted(moved.glob("*/config"))
    if not images or not configs:
        raise KernelError(f"{package} holds no vmlinuz and config")
    if images[0].name == "vmlinuz":
        release = images[0].parent.name
    else:
        release = images[0].name[len("vmlinuz-") :]
    config = configs[0].read_text(errors="replace")
    if not has_mptcp(config):
        raise KernelError(f"{package} has MPTCP compiled out (CONFIG_MPTCP is not set): "
                          "it cannot be an MPTCP endpoint")  # fmt: skip
    modules = find_modules(tree, release)
    busybox = Path("/bin/busybox")
    if not busybox.is_file():
        raise EnvironmentProblem("busybox is not installed (Debian's busybox-static)")
    folder = work / "kernel"
    folder.mkdir()
    shutil.copy(images[0], folder / "vmlinuz")
    (folder / "config").write_text(config)
    (folder / "initramfs").write_bytes(initramfs(busybox.read_bytes(), modules))
    meta = {"release": release, "package": package, "modules": sorted(modules),
            "fetched": time.time()}  # fmt: skip
    (folder / "kernel.json").write_text(json.dumps(meta, indent=1))
    final = root / release
    if final.exists():
        shutil.rmtree(final)
    os.rename(folder, final)
    return Kernel(release, package, final)


def remove(wanted: str) -> Kernel:
    root = cache_dir()
    with locked(root):
        kernel = find(wanted)
        shutil.rmtree(kernel.folder)
        return kernel
