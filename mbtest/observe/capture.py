"""Packet captures with tcpdump inside a namespace, owned and stopped with a deadline."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import time
from collections.abc import Iterator

from mbtest.errors import EnvironmentProblem, MbtestError
from mbtest.host import exits, netns, signals


class Capture:
    """tcpdump on one interface of one namespace, writing a pcap file (full packets)."""

    def __init__(
        self,
        ns: str,
        interface: str,
        path: str,
        bpf: str = "tcp or icmp or icmp6",
        snaplen: int = 4096,
    ):
        self.ns, self.interface, self.path, self.bpf = ns, interface, path, bpf
        self.snaplen = snaplen  # whole MTU-sized packets; 0 for GSO-sized ones
        self.proc: subprocess.Popen | None = None
        self.interrupted = False
        self.stats: dict[str, int] = {}  # tcpdump's closing counts: captured, dropped by kernel...

    def start(self, timeout: float = 5.0) -> Capture:
        self.launch()
        return self.wait_ready(timeout)

    def launch(self) -> None:
        """Start tcpdump without waiting for it (start several, then wait for each)."""
        tcpdump = shutil.which("tcpdump") or "/usr/bin/tcpdump"
        if not os.path.exists(tcpdump):
            raise EnvironmentProblem("tcpdump is not installed: run `make setup`")
        # With GSO-sized packets (snaplen 0, up to 256 KiB each) the default 2 MiB ring holds
        # only 8 and bursts are dropped: 64 MiB holds 256. Wire-sized packets are packed in
        # the ring by their length: 16 MiB holds about 10000 (a cell sends about 1000), and
        # a smaller ring is made and freed faster (about 20 ms less per tcpdump).
        snaplen = str(self.snaplen)
        ring_kib = "16384" if 0 < self.snaplen <= 16384 else "65536"
        argv = [tcpdump, "-i", self.interface, "-n", "-s", snaplen, "-B", ring_kib, "-U"]
        argv += ["--immediate-mode", "-w", self.path, "-Z", "root", self.bpf]
        self.proc = netns.popen(self.ns, argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def wait_ready(self, timeout: float = 5.0) -> Capture:
        assert self.proc is not None
        # tcpdump says "listening on" once the socket is open: only then is nothing missed.
        deadline = time.monotonic() + timeout
        seen = b""
        while b"listening on" not in seen:
            signals.check()
            left = deadline - time.monotonic()
            if left <= 0 or self.proc.poll() is not None:
                self.stop()
                detail = seen.decode(errors="replace").strip().splitlines()
                why = detail[-1] if detail else "no output"
                raise MbtestError(f"tcpdump on {self.ns}:{self.interface} did not start: {why}")
            ready, _, _ = select.select([self.proc.stderr], [], [], left)
            if ready:
                chunk = os.read(self.proc.stderr.fileno(), 4096)
                if not chunk:
                    continue
                seen += chunk
        return self

    def interrupt(self) -> None:
        """Ask tcpdump to stop (it flushes its file); ``stop`` then waits for it. Asking every
        capture first lets them all finish at once rather than one after another."""
        if self.proc is not None and not self.interrupted:
            with contextlib.suppress(ProcessLookupError):
                self.proc.send_signal(signal.SIGINT)
            self.interrupted = True

    def stop(self, timeout: float = 5.0) -> str:
        """Stop tcpdump (flushing the file) and return the pcap path."""
        if self.proc is None:
            return self.path
        self.interrupt()
        exits.wait_exited([self.proc.pid], timeout)  # (woken at its exit; wait() then reaps)
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait(timeout)
        if self.proc.stderr:
            text = self.proc.stderr.read().decode(errors="replace")
            self.stats = _parse_stats(text)
            if "dropped by kernel" not in self.stats:
                self.stats["exit"] = self.proc.returncode
                self.stats["stderr"] = text.strip()[-300:]
            self.proc.stderr.close()
        self.proc = None
        self.interrupted = False
        return self.path

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


@contextlib.contextmanager
def capturing(captures: list[Capture], timeout: float = 5.0) -> Iterator[list[Capture]]:
    """Start every capture at once, wait until all listen, and stop them all on exit."""
    try:
        for capture in captures:
            capture.launch()
        for capture in captures:
            capture.wait_ready(timeout)
        yield captures
    finally:
        for capture in captures:
            capture.interrupt()
        exits.wait_exited([c.proc.pid for c in captures if c.proc is not None], timeout)
        for capture in captures:
            capture.stop()


def _parse_stats(text: str) -> dict[str, int]:
    """tcpdump's last lines: "12 packets captured", "0 packets dropped by kernel"..."""
    stats = {}
    for line in text.splitlines():
        words = line.split()
        if len(words) >= 3 and words[0].isdigit() and words[1] == "packets":
            stats[" ".join(words[2:])] = int(words[0])
    return stats
