"""Observing a kernel middlebox: every TCP packet is seen as it comes into the slot (queued
to userspace and accepted unchanged) and as it leaves (packet sockets, after NAT, helpers
and sequence adjustment); the difference is the kernel's change, written to the log.

A packet that cannot be parsed on either side is logged as malformed and skipped: it never
stops the observer, whose silence would otherwise read as drops.
"""

from __future__ import annotations

import select
import socket
import threading
import time
from collections import deque
from collections.abc import Callable

from mbtest.errors import MbtestError
from mbtest.middlebox.flows import FlowTracker
from mbtest.middlebox.log import Log
from mbtest.packet.edit import TcpPacket, option_spans

PACKET_OUTGOING = 4
MAX_PENDING = 100_000  # keys waiting for their egress twin; beyond this, memory is bounded


class EgressWatch:
    """Every packet leaving the slot's interfaces, handed to a callback from a thread."""

    def __init__(
        self,
        interfaces: list[str],
        callback: Callable[[bytes], None],
        on_error: Callable[[str], None],
    ):
        self.callback, self.on_error = callback, on_error
        self.sockets = []
        for ifname in interfaces:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            sock.bind((ifname, 0))
            self.sockets.append(sock)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                ready, _, _ = select.select(self.sockets, [], [], 0.1)
            except (OSError, ValueError):  # closed by stop()
                return
            for sock in ready:
                try:
                    frame, address = sock.recvfrom(65536)
                except OSError:
                    continue
                if address[2] != PACKET_OUTGOING or len(frame) < 14:
                    continue
                if frame[12:14] not in (b"\x08\x00", b"\x86\xdd"):
                    continue
                try:
                    self.callback(frame[14:])
                except Exception as e:  # one bad packet never ends the observation
                    self.on_error(f"{type(e).__name__}: {e}")

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        for sock in self.sockets:
            sock.close()


def packet_key(pkt: TcpPacket) -> tuple:
    """What NAT and sequence-adjusting helpers leave alone: the IPv4 ID (unique per packet
    of a flow) and the flags, with the initial sequence number on a SYN or SYN/ACK (Linux
    sends those with IP ID 0, so two flows' handshakes would otherwise pair crosswise; no
    kernel middlebox changes an ISN); for IPv6, the flow label, the numbers and the TSval
    (a flow's packets share their flow label, and a packet the slot consumed, such as one
    whose hop limit ran out there, must not pair with the next one alike)."""
    if pkt.version == 4:
        if pkt.flags & 0x02:
            return (4, bytes(pkt.buf[4:6]), pkt.flags, pkt.seq)
        return (4, bytes(pkt.buf[4:6]), pkt.flags)
    return (6, bytes(pkt.buf[1:4]), pkt.seq, pkt.ack, pkt.flags, _tsval(pkt))


def _tsval(pkt: TcpPacket) -> bytes:
    """The TSval, or nothing (no kernel middlebox rewrites timestamps)."""
    raw = bytes(pkt.options)
    for span in option_spans(raw, cut=True):
        if span.kind == 8 and span.end - span.start == 10:
            return raw[span.start + 2 : span.start + 6]
    return b""


class KernelObserver:
    """Pairs each packet leaving the slot with the same packet as it came in."""

    def __init__(self, log: Log, tracker: FlowTracker, sides: dict[str, str]):
        self.log, self.tracker, self.sides = log, tracker, sides
        self.pending: dict[tuple, deque] = {}  # key -> (options, payload, when, seq, ack)
        self.lock = threading.Lock()  # the egress thread shares pending and the tracker
        self.malformed = 0
        self.egress: EgressWatch | None = None

    def start(self) -> None:
        """Watch the slot's interfaces (packet sockets) for what leaves."""
        sides = [self.sides["client"], self.sides["server"]]
        self.egress = EgressWatch(sides, self.after, self.bad)
        self.egress.start()

    def bad(self, why: str) -> None:
        self.malformed += 1
        self.log.write(
            {"flow": "?", "direction": "?", "field": "malformed", "before": None, "after": why}
        )

    def before(self, data: bytes) -> None:
        """A packet coming in (from the queue, which accepts it unchanged)."""
        try:
            pkt = TcpPacket(data)
        except MbtestError as e:
            self.bad(str(e))
            return
        with self.lock:
            self.tracker.observe(pkt)
            # pure ACKs often share every number: keep them in arrival order per key
            seen = (bytes(pkt.options), bytes(pkt.payload), time.monotonic(), pkt.seq, pkt.ack)
            self.pending.setdefault(packet_key(pkt), deque()).append(seen)
            if len(self.pending) > MAX_PENDING:
                self.pending.clear()

    def after(self, data: bytes) -> None:
        """A packet leaving the slot: compare it with the same packet as it came in."""
        try:
            pkt = TcpPacket(data)
        except MbtestError:
            return  # not TCP (ICMP, ARP's neighbours): nothing to pair
        key = packet_key(pkt)
        with self.lock:
            waiting = self.pending.get(key)
            before, payload_before, _, seq, ack = waiting.popleft() if waiting else (None,) * 5
            if waiting is not None and not waiting:
                del self.pending[key]
            flow, direction = self.tracker.lookup(pkt)
        name = flow.state.get("name", "?") if flow else "?"
        entry = {"flow": name, "direction": direction, "seq": pkt.seq, "flags": pkt.flags}
        if before is None:  # nothing came in like it: the kernel made it (SYNPROXY...)
            sent = f"sent by the kernel: {bytes(pkt.buf).hex()}"
            self.log.write({**entry, "field": "injected", "before": None, "after": sent})
            return
        if before != bytes(pkt.options):
            self.log.write(
                {
                    **entry,
                    "field": "tcp.options (kernel)",
                    "before": before.hex(),
                    "after": bytes(pkt.options).hex(),
                }
            )
        for field_name, old, new in (
            ("tcp.seq (kernel)", seq, pkt.seq),
            ("tcp.ack (kernel)", ack, pkt.ack),
        ):
            if old != new:
                self.log.write({**entry, "field": field_name, "before": old, "after": new})
        if payload_before != bytes(pkt.payload):
            self.log.write(
                {
                    **entry,
                    "field": "payload (kernel)",
                    "before": payload_before.hex(),
                    "after": bytes(pkt.payload).hex(),
                }
            )

    def stop(self) -> None:
        if self.egress is not None:
            self.egress.stop()

    def log_consumed(self) -> None:
        """Packets the kernel took in and never forwarded (dropped, or answered itself); the
        last half second's are left out, as they may still have been on their way."""
        settled = time.monotonic() - 0.5
        with self.lock:
            for key in [k for k, q in self.pending.items() if q and q[0][2] < settled][:1000]:
                seq, flags = self.pending[key][0][3], key[2] if key[0] == 4 else key[4]
                entry = {"flow": "?", "direction": "?", "seq": seq, "flags": flags}
                self.log.write(
                    {**entry, "field": "packet", "before": "received", "after": "dropped"}
                )
            self.pending.clear()
