"""``mbtest serve``: a cooperating MPTCP server on the far host.

It accepts MPTCP connections on its data port (a real endpoint, as any server), watches
every TCP segment that port receives and sends (a packet socket: what arrived, after the
whole path, and what it answered, before the path back), and keeps them, for a probe that
asked beforehand, under a nonce the probe chose: not under addresses or sequence numbers,
which NATs and sequence rewriters change. The probe fetches them over the authenticated
control channel (``mbtest.endpoints.control``) and diffs what it sent with what arrived,
and what the server sent with what came back. On request it also sends a segment the probe
crafted back along a flow the watch saw, so that any option can be tried server to client.

Bounded in memory and time: at most MAX_WATCHES watches of at most MAX_WATCH_SECONDS, each
keeping at most MAX_RECORDS packets (their first RECORD_BYTES bytes), forgotten KEEP_SECONDS
after they end; at most MAX_CLIENTS control connections, each closed after IDLE_SECONDS
without a request or at its first message that fails the integrity check.
"""

from __future__ import annotations

import contextlib
import re
import selectors
import socket
import struct
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any

from mbtest.endpoints import control
from mbtest.endpoints.listener import MAX_CONNECTIONS, READ_SIZE, open_listeners
from mbtest.errors import PacketError
from mbtest.packet.ip import TCP, locate

MAX_WATCHES = 64
MAX_WATCH_SECONDS = 60.0
MAX_RECORDS = 4096
RECORD_BYTES = 256  # IP and TCP headers with every option, and the start of the payload
KEEP_SECONDS = 120.0
MAX_CLIENTS = 8
IDLE_SECONDS = 30.0
MAX_SEND = 1500
NONCE = re.compile(r"^[0-9a-f]{16,64}$")
ETH_P_ALL = 0x0003
PACKET_OUTGOING = 4


@dataclass
class Watch:
    started: float
    until: float
    records: deque = field(default_factory=lambda: deque(maxlen=MAX_RECORDS))
    dropped: int = 0


class Recorder:
    """Every TCP segment to or from one port, on every interface, kept for the watches."""

    def __init__(self, port: int):
        self.port = port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        self.sock.setblocking(False)
        self.watches: dict[str, Watch] = {}
        self.malformed = 0

    def watch(self, nonce: str, seconds: float) -> None:
        self.expire()
        if nonce not in self.watches and len(self.watches) >= MAX_WATCHES:
            raise ValueError(f"already {MAX_WATCHES} watches")
        now = time.monotonic()
        self.watches[nonce] = Watch(now, now + min(seconds, MAX_WATCH_SECONDS))

    def expire(self) -> None:
        now = time.monotonic()
        for nonce in [n for n, w in self.watches.items() if now > w.until + KEEP_SECONDS]:
            del self.watches[nonce]

    def read(self) -> None:
        """Everything queued on the packet socket; one packet that cannot be read is
        counted and skipped, never fatal."""
        while True:
            try:
                data, address = self.sock.recvfrom(65535)
            except (BlockingIOError, InterruptedError):
                return
            direction = "out" if address[2] == PACKET_OUTGOING else "in"
            try:
                if not self._ours(data):
                    continue
            except PacketError:
                self.malformed += 1
                continue
            now = time.monotonic()
            for watch in self.watches.values():
                if watch.started <= now <= watch.until:
                    if len(watch.records) == MAX_RECORDS:
                        watch.dropped += 1
                    watch.records.append((now - watch.started, direction, data[:RECORD_BYTES]))

    def _ours(self, packet: bytes) -> bool:
        header = locate(packet)
        if header.protocol != TCP or header.later_fragment:
            return False
        if len(packet) < header.header_len + 4:
            raise PacketError("TCP ports cut short")
        sport, dport = struct.unpack_from("!HH", packet, header.header_len)
        return self.port in (sport, dport)

    def send_back(self, nonce: str, packet_hex: str) -> dict[str, Any]:
        """Send a probe's crafted segment from the data port back to where one of the
        watch's packets came from (as this end sees it, after any NAT): never anywhere else,
        never larger than MAX_SEND bytes."""
        watch = self.watches.get(nonce)
        if watch is None:
            raise ValueError("no watch with this nonce (never asked, or forgotten)")
        try:
            packet = bytes.fromhex(packet_hex)
            header = locate(packet)
        except (ValueError, PacketError):
            raise ValueError("not an IP packet") from None
        if len(packet) > MAX_SEND or header.protocol != TCP:
            raise ValueError(f"a crafted segment is one TCP packet of at most {MAX_SEND} bytes")
        src, dst, sport, dport = _endpoints(packet, header)
        came = set()
        for _, direction, raw in watch.records:
            if direction == "in":
                with contextlib.suppress(PacketError, struct.error):
                    came.add(_endpoints(raw, locate(raw)))
        if (dst, src, dport, sport) not in came or sport != self.port:
            raise ValueError("a crafted segment goes back only along a flow the watch saw")
        family = socket.AF_INET if header.version == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw_socket:
            raw_socket.sendto(packet, (dst, 0))
        return {"sent": len(packet)}

    def fetch(self, nonce: str) -> dict[str, Any]:
        watch = self.watches.get(nonce)
        if watch is None:
            raise ValueError("no watch with this nonce (never asked, or forgotten)")
        return {
            "records": [
                {"after_seconds": round(t, 6), "direction": d, "packet_hex": raw.hex()}
                for t, d, raw in watch.records
            ],
            "dropped": watch.dropped,
            "watching": time.monotonic() <= watch.until,
        }


def _endpoints(packet: bytes, header) -> tuple[str, str, int, int]:
    """(source, destination, source port, destination port) of a TCP packet."""
    if header.version == 4:
        src = socket.inet_ntop(socket.AF_INET, packet[12:16])
        dst = socket.inet_ntop(socket.AF_INET, packet[16:20])
    else:
        src = socket.inet_ntop(socket.AF_INET6, packet[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
    sport, dport = struct.unpack_from("!HH", packet, header.header_len)
    return src, dst, sport, dport


@dataclass
class ControlClient:
    sock: socket.socket
    reader: control.LineReader
    last: float
    session: str | None = None
    seq: int = 0


def handle(recorder: Recorder, client: ControlClient, body: dict[str, Any]) -> dict[str, Any]:
    """The answer to one authenticated request (an ``error`` field when refused)."""
    session, seq = body.get("session"), body.get("seq")
    answer: dict[str, Any] = {"session": session, "seq": seq}
    op, nonce = body.get("op"), str(body.get("nonce", ""))
    if op not in ("watch", "fetch", "hello", "send"):
        return {**answer, "error": f"unknown request {str(op)[:40]!r}"}
    if op == "hello":
        return {**answer, "port": recorder.port}
    if not NONCE.match(nonce):
        return {**answer, "error": "a nonce is 16 to 64 lowercase hex digits"}
    try:
        if op == "watch":
            seconds = float(body.get("seconds", 10))
            if not 0 < seconds <= MAX_WATCH_SECONDS:
                return {**answer, "error": f"a watch lasts at most {MAX_WATCH_SECONDS:g} s"}
            recorder.watch(nonce, seconds)
            return {**answer, "watching": nonce}
        if op == "send":
            return {**answer, **recorder.send_back(nonce, str(body.get("packet_hex", "")))}
        return {**answer, **recorder.fetch(nonce)}
    except ValueError as e:
        return {**answer, "error": str(e)}


def serve(port: int, control_port: int, secret: bytes, ready=None) -> None:
    """Run until killed: the MPTCP data port, the packet watch, the control channel."""
    recorder = Recorder(port)
    selector = selectors.DefaultSelector()
    for sock in open_listeners(port):
        selector.register(sock, selectors.EVENT_READ, ("listener", None))
    controls = []
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        sock = socket.socket(family, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, control_port))
        sock.listen(16)
        sock.setblocking(False)
        controls.append(sock)
        selector.register(sock, selectors.EVENT_READ, ("control-listener", None))
    selector.register(recorder.sock, selectors.EVENT_READ, ("packets", None))
    clients: dict[socket.socket, ControlClient] = {}
    data_connections = 0
    if ready is not None:
        ready()

    def drop(sock: socket.socket) -> None:
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(sock)
        clients.pop(sock, None)
        sock.close()

    while True:
        for key, _ in selector.select(timeout=1.0):
            kind, _ = key.data
            sock = key.fileobj  # type: ignore[assignment]
            if kind == "packets":
                recorder.read()
            elif kind == "listener":
                with contextlib.suppress(OSError):
                    conn, _ = sock.accept()
                    if data_connections >= MAX_CONNECTIONS:
                        conn.close()
                        continue
                    conn.setblocking(False)
                    selector.register(conn, selectors.EVENT_READ, ("data", None))
                    data_connections += 1
            elif kind == "data":
                try:
                    chunk = sock.recv(READ_SIZE)
                except BlockingIOError:
                    continue
                except OSError:
                    chunk = b""
                if not chunk:
                    drop(sock)
                    data_connections -= 1
            elif kind == "control-listener":
                with contextlib.suppress(OSError):
                    conn, _ = sock.accept()
                    if len(clients) >= MAX_CLIENTS:
                        conn.close()
                        continue
                    clients[conn] = ControlClient(conn, control.LineReader(conn), time.monotonic())
                    selector.register(conn, selectors.EVENT_READ, ("control", None))
            elif kind == "control":
                _serve_control(recorder, clients[sock], secret, drop)
        now = time.monotonic()
        for sock in [s for s, c in clients.items() if now - c.last > IDLE_SECONDS]:
            drop(sock)
        recorder.expire()


def _serve_control(recorder: Recorder, client: ControlClient, secret: bytes, drop) -> None:
    """One request: read (it must be complete within the deadline), check, answer. A
    message that fails its check, or breaks the session's order, ends the connection."""
    try:
        line = client.reader.read_line(timeout=2.0)
        body = control.open_sealed(secret, line)
        session, seq = body.get("session"), body.get("seq")
        if not isinstance(session, str) or not isinstance(seq, int):
            raise control.Tampered("no session or sequence number")
        if client.session is None:
            client.session = session
        if session != client.session or seq <= client.seq:
            raise control.Tampered("replayed or reordered")
        client.seq, client.last = seq, time.monotonic()
        client.sock.setblocking(True)
        client.sock.settimeout(5.0)
        client.sock.sendall(control.seal(secret, handle(recorder, client, body)))
        client.sock.setblocking(False)
    except control.Tampered:  # said in plain words (a forged notice only stops a report)
        with contextlib.suppress(OSError):
            client.sock.setblocking(True)
            client.sock.settimeout(1.0)
            client.sock.sendall(control.REFUSED)
        drop(client.sock)
    except (control.ControlError, OSError):
        drop(client.sock)
