"""Raw sockets for one address family: send packets exactly as built, read back every ICMP
error and every TCP segment that arrives, each with its arrival time.

Raw IP sockets filter by protocol in the kernel, so a busy host does not flood the engine;
replies are read with deadlines only (select), never with a blocking read.
"""

from __future__ import annotations

import contextlib
import ctypes
import ipaddress
import os
import queue
import select
import socket
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from mbtest.errors import EnvironmentProblem, MbtestError, PacketError
from mbtest.packet.headers import TcpSegment, parse_tcp, parse_tcp_segment
from mbtest.packet.quote import IcmpError, error_quote, parse_icmp, strip_ipv4_header
from mbtest.probe.guard import MARK

SO_MARK = 36


@dataclass(frozen=True)
class Arrival:
    """One packet read: an ICMP error or a TCP segment, with when it arrived."""

    time: float
    icmp: IcmpError | None = None
    tcp: TcpSegment | None = None
    malformed: str | None = None  # a TCP packet that could not be read: why
    source: str | None = None  # (for a malformed one) who sent it


def read_arrival(icmp: bool, data: bytes, source: str, version: int, now: float) -> Arrival | None:
    """What one packet read from a raw socket is: an ICMP error, a TCP segment, or a malformed
    packet saying why (None for anything else, such as an ICMP echo)."""
    if icmp:
        message = strip_ipv4_header(data) if version == 4 else data
        error = parse_icmp(message, source, version)
        return None if error is None else Arrival(now, icmp=error)
    try:
        # (an IPv6 raw socket gives the segment without its IP header)
        segment = parse_tcp(data) if version == 4 else parse_tcp_segment(data, 6, source, "")
    except PacketError as e:
        return Arrival(now, malformed=str(e), source=source)
    return None if segment is None else Arrival(now, tcp=segment)


class Recorder:
    """Every packet a probe run sent and every answer about its target (an ICMP error
    quoting a packet to it, a segment from it), as whole IP packets with wall-clock times:
    a campaign's per-target pcap. Packets about other targets (the raw sockets see every
    ICMP error the host gets) are left out."""

    def __init__(self, target: str, source: str):
        self.target, self.source = target, source
        self.frames: list[tuple[float, bytes]] = []

    def sent(self, packet: bytes) -> None:
        self.frames.append((time.time(), packet))

    def received(self, data: bytes, source: str, icmp: bool, version: int) -> None:
        """A packet read from a raw socket (IPv6 ones come without their IP header: one is
        put back, hop limit unknown and written as 0)."""
        if version == 6:
            next_header = 58 if icmp else 6
            data = _ipv6_header(source, self.source, len(data), next_header) + data
        if icmp:
            quoted = error_quote(data)
            if quoted is None or quoted.ip_fields().get("dst") != self.target:
                return
        elif source != self.target:
            return
        self.frames.append((time.time(), data))


def _ipv6_header(src: str, dst: str, length: int, next_header: int) -> bytes:
    return (
        struct.pack("!IHBB", 6 << 28, length & 0xFFFF, next_header, 0)
        + socket.inet_pton(socket.AF_INET6, src.split("%")[0])
        + socket.inet_pton(socket.AF_INET6, dst)
    )


SO_ATTACH_FILTER = 26


def _bpf(instructions: list[tuple[int, int, int, int]]) -> tuple[ctypes.Array, bytes]:
    """A classic BPF program as setsockopt takes it (a sock_fprog), with its buffer."""
    code = (ctypes.c_ubyte * (8 * len(instructions)))()
    for i, (op, jt, jf, k) in enumerate(instructions):
        struct.pack_into("HBBI", code, 8 * i, op, jt, jf, k)
    prog = struct.pack("HL", len(instructions), ctypes.addressof(code))
    return code, prog


_LD_W_ABS, _LD_W_IND, _LDX_MSH = 0x20, 0x40, 0xB1
_JEQ, _RET = 0x15, 0x06
SKF_NET_OFF = -0x100000  # (a load relative to the network header)


def about_filters(target: str, version: int) -> dict[str, list[tuple[int, int, int, int]]]:
    """Kernel filters keeping only what concerns one target: ICMP errors quoting a packet
    to it and segments from it. A campaign's runs each hold raw sockets, and every
    raw socket gets a copy of every ICMP error: without them each run would read and parse
    every other run's answers too, and the campaign would slow down as workers are added.
    (An IPv6 raw socket's data starts after the IP header: its source is read at the
    kernel's network-header offset.)"""
    packed = ipaddress.ip_address(target).packed
    words = [int.from_bytes(packed[i : i + 4], "big") for i in range(0, len(packed), 4)]
    keep, drop = (_RET, 0, 0, 0x40000), (_RET, 0, 0, 0)

    def compare(load: tuple[int, int, int, int], offsets: list[int], indexed: bool):
        out = []
        left = len(words)
        for word, offset in zip(words, offsets, strict=True):
            left -= 1
            out.append((_LD_W_IND if indexed else _LD_W_ABS, 0, 0, offset))
            out.append((_JEQ, 0, 2 * left + 1, word))  # mismatch: jump to the drop
        return [*load, *out, keep, drop]

    if version == 4:  # (the data starts at the outer IPv4 header)
        msh = [(_LDX_MSH, 0, 0, 0)]  # X = its length
        icmp = compare(msh, [8 + 16], indexed=True)  # the quoted header's destination
        tcp = compare([], [12], indexed=False)  # the source
        return {"icmp": icmp, "tcp": tcp}
    icmp = compare([], [8 + 24 + 4 * i for i in range(4)], indexed=False)  # (at ICMPv6)
    tcp = compare([], [(SKF_NET_OFF + 8 + 4 * i) & 0xFFFFFFFF for i in range(4)], False)
    return {"icmp": icmp, "tcp": tcp}


class RawSockets:
    def __init__(
        self,
        version: int,
        budget: Any = None,
        recorder: Recorder | None = None,
        about: str | None = None,
    ):
        self.version = version
        self.budget = budget  # something with take(): waits until a packet may leave
        self.recorder = recorder  # --pcap: what was sent and what came back
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        icmp = socket.IPPROTO_ICMP if version == 4 else socket.IPPROTO_ICMPV6
        try:
            self.sender = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.icmp = socket.socket(family, socket.SOCK_RAW, icmp)
            self.tcp = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
        except PermissionError:
            raise EnvironmentProblem("probing needs root (raw sockets): run it with sudo") from None
        self.sent_any = False
        self.first_sent: float | None = None
        self.sender.setsockopt(socket.SOL_SOCKET, SO_MARK, MARK)
        for sock in (self.icmp, self.tcp):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setblocking(False)
        if about is not None:  # (a campaign's run: only what concerns its target)
            for name, program in about_filters(about, version).items():
                code, prog = _bpf(program)
                getattr(self, name).setsockopt(socket.SOL_SOCKET, SO_ATTACH_FILTER, prog)
                del code  # (the kernel copied the program)

    def send(self, packet: bytes, dst: str) -> float:
        """Send one packet; returns when it left (monotonic seconds)."""
        if self.budget is not None:
            self.budget.take()
        sent_at = time.monotonic()
        self.sender.sendto(packet, (dst, 0))
        if self.recorder is not None:
            self.recorder.sent(packet)
        if not self.sent_any:
            self.sent_any, self.first_sent = True, _process_age()
        return sent_at

    def first_packet_after_start(self) -> float | None:
        """Seconds from the process's start to its first packet sent (None: none sent)."""
        return None if self.first_sent is None else round(self.first_sent, 3)

    def receive(self, until: float) -> list[Arrival]:
        """Everything that arrives before `until` (monotonic), returning at the first batch."""
        out: list[Arrival] = []
        while not out:
            left = until - time.monotonic()
            if left <= 0:
                return out
            ready, _, _ = select.select([self.icmp, self.tcp], [], [], left)
            for sock in ready:
                out += self._drain(sock)
        return out

    def poll(self) -> list[Arrival]:
        """What has arrived already, without waiting."""
        return self._drain(self.icmp) + self._drain(self.tcp)

    def _drain(self, sock: socket.socket) -> list[Arrival]:
        """Everything queued on one socket; each packet parsed on its own (one that cannot be
        read is an Arrival saying so, never an exception)."""
        out = []
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return out
            if self.recorder is not None:
                with contextlib.suppress(ValueError, OSError):  # (too odd to file: skipped)
                    self.recorder.received(data, addr[0], sock is self.icmp, self.version)
            arrival = read_arrival(sock is self.icmp, data, addr[0], self.version, time.monotonic())
            if arrival is not None:
                out.append(arrival)

    def close(self) -> None:
        for sock in (self.sender, self.icmp, self.tcp):
            sock.close()


def _process_age() -> float | None:
    """How long this process has run, from the kernel's record of its start (so that time
    spent importing before ``main`` counts too)."""
    try:
        with open("/proc/self/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        started = int(fields[19]) / os.sysconf("SC_CLK_TCK")  # field 22: starttime
        return time.clock_gettime(time.CLOCK_BOOTTIME) - started
    except (OSError, ValueError, IndexError):
        return None


class ProbeAbandoned(MbtestError):
    """The run stopped (another probe failed, or a signal): this probe stops too."""


class Fanout:
    """One reader of the raw sockets for probes that run side by side: every arrival is put
    in every probe's inbox, so one probe's wait never swallows another's answers (each probe
    keeps only what matches its own ports and keys). The reader stops with ``close``."""

    TICK = 0.05  # how often the reader looks whether it should stop

    def __init__(self, io: RawSockets):
        self.io = io
        self.version = io.version
        self._inboxes: list[queue.SimpleQueue[list[Arrival]]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._read, name="probe-reader", daemon=True)
        self._reader.start()

    def view(self) -> ProbeView:
        inbox: queue.SimpleQueue[list[Arrival]] = queue.SimpleQueue()
        with self._lock:
            self._inboxes.append(inbox)
        return ProbeView(self, inbox)

    def _read(self) -> None:
        while not self._stop.is_set():
            try:
                ready, _, _ = select.select([self.io.icmp, self.io.tcp], [], [], self.TICK)
                arrivals = [a for sock in ready for a in self.io._drain(sock)]
            except (OSError, ValueError):  # the sockets were closed under us: the run is over
                return
            if arrivals:
                with self._lock:
                    for inbox in self._inboxes:
                        inbox.put(arrivals)

    @property
    def closed(self) -> bool:
        return self._stop.is_set()

    def close(self) -> None:
        self._stop.set()
        self._reader.join(timeout=1.0)


class ProbeView:
    """What one probe of a concurrent run sees: the RawSockets interface over its inbox."""

    def __init__(self, fanout: Fanout, inbox: queue.SimpleQueue[list[Arrival]]):
        self._fanout = fanout
        self._inbox = inbox
        self.version = fanout.version

    def send(self, packet: bytes, dst: str) -> float:
        return self._fanout.io.send(packet, dst)

    def receive(self, until: float) -> list[Arrival]:
        """Everything that arrives before `until`, returning at the first batch; it wakes
        at least every TICK so that the probe's own loop can see a signal."""
        if self._fanout.closed:
            raise ProbeAbandoned("the probe run stopped")
        left = until - time.monotonic()
        if left <= 0:
            return self.poll()
        try:
            out = self._inbox.get(timeout=min(left, Fanout.TICK))
        except queue.Empty:
            return []
        return out + self.poll()

    def poll(self) -> list[Arrival]:
        out: list[Arrival] = []
        while True:
            try:
                out += self._inbox.get_nowait()
            except queue.Empty:
                return out
