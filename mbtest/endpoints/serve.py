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
import os
import re
import selectors
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any

from mbtest.endpoints import control
from mbtest.endpoints.listener import MAX_CONNECTIONS, accept, open_listeners, read_some
from mbtest.errors import PacketError
from mbtest.packet.ip import TCP, locate

MAX_WATCHES = 64
MAX_WATCH_SECONDS = 60.0
MAX_RECORDS = 4096
RECORD_BYTES = 256  # IP and TCP headers with every option, and the start of the payload
KEEP_SECONDS = 120.0
MAX_CLIENTS = 8
IDLE_SECONDS = 30.0
AUTH_SECONDS = 5.0  # a control connection that has not authenticated by then is closed
MAX_SEND = 1500
NONCE = re.compile(r"^[0-9a-f]{16,64}$")
ETH_P_ALL = 0x0003
PACKET_HOST, PACKET_OUTGOING = 0, 4  # (packets for other hosts, seen promiscuously, are not ours)
SOL_PACKET, PACKET_STATISTICS = 263, 6
SEND_FLAGS = 0x10 | 0x08  # a crafted segment is an ACK (PSH allowed): never SYN, RST or FIN


@dataclass
class Watch:
    started: float
    until: float
    records: list = field(default_factory=list)  # the first MAX_RECORDS: the probe's own
    dropped: int = 0


class Recorder:
    """Every TCP segment to or from one port, on every interface, kept for the watches."""

    def __init__(self, port: int):
        self.port = port
        self.sock = socket.socket(socket.AF_PACKET, socket.SOCK_DGRAM, socket.htons(ETH_P_ALL))
        with contextlib.suppress(OSError):  # room for bursts while a control answer is sent
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)
        self.sock.setblocking(False)
        self.watches: dict[str, Watch] = {}
        self.malformed = 0
        self.kernel_dropped = 0  # packets the kernel could not queue for us (said in fetches)

    def watch(self, nonce: str, seconds: float) -> None:
        self.expire()
        if nonce in self.watches:
            raise ValueError("this nonce is already watched (a nonce is used once)")
        if len(self.watches) >= MAX_WATCHES:
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
            if address[2] not in (PACKET_HOST, PACKET_OUTGOING):
                continue
            direction = "out" if address[2] == PACKET_OUTGOING else "in"
            try:
                if not self._ours(data):
                    continue
            except PacketError:
                self.malformed += 1
                continue
            now = time.monotonic()
            record = data[:RECORD_BYTES]  # (one copy, shared by the watches)
            for watch in self.watches.values():
                if watch.started <= now <= watch.until:
                    if len(watch.records) >= MAX_RECORDS:
                        watch.dropped += 1
                        continue
                    watch.records.append((now - watch.started, direction, record))

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
        if len(packet) < header.header_len + 20:
            raise ValueError("the crafted segment's TCP header is cut short")
        flags = packet[header.header_len + 13]
        if flags & ~SEND_FLAGS or not flags & 0x10:
            raise ValueError("a crafted segment is an ACK (with PSH at most): no SYN, RST or FIN")
        src, dst, sport, dport = _endpoints(packet, header)
        came = set()
        for _, direction, raw in watch.records:
            if direction == "in":
                with contextlib.suppress(PacketError, struct.error, ValueError):
                    came.add(_endpoints(raw, locate(raw)))
        if (dst, src, dport, sport) not in came or sport != self.port:
            raise ValueError("a crafted segment goes back only along a flow the watch saw")
        family = socket.AF_INET if header.version == 4 else socket.AF_INET6
        with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as raw_socket:
            raw_socket.sendto(packet, (dst, 0))
        return {"sent": len(packet)}

    def _count_kernel_drops(self) -> None:
        with contextlib.suppress(OSError, struct.error):
            _, drops = struct.unpack("II", self.sock.getsockopt(SOL_PACKET, PACKET_STATISTICS, 8))
            self.kernel_dropped += drops  # (reading the statistics resets them)

    def fetch(self, nonce: str) -> dict[str, Any]:
        """The watch's records; the watch ends here (a probe fetches once)."""
        watch = self.watches.get(nonce)
        if watch is None:
            raise ValueError("no watch with this nonce (never asked, or forgotten)")
        self.read()
        self._count_kernel_drops()
        watch.until = min(watch.until, time.monotonic())
        return {
            "kernel_dropped": self.kernel_dropped,
            "records": [
                {"after_seconds": round(t, 6), "direction": d, "packet_hex": raw.hex()}
                for t, d, raw in watch.records
            ],
            "dropped": watch.dropped,
            "watching": time.monotonic() <= watch.until,
        }


def _endpoints(packet: bytes, header) -> tuple[str, str, int, int]:
    """(source, destination, source port, destination port) of a TCP packet."""
    if len(packet) < header.header_len + 4:
        raise ValueError("TCP ports cut short")
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
    opened: float
    last: float
    buffer: bytes = b""
    session: str | None = None
    seq: int = 0
    nonce: str = field(default_factory=lambda: os.urandom(16).hex())  # this connection's
    authenticated: bool = False


def handle(recorder: Recorder, client: ControlClient, body: dict[str, Any]) -> dict[str, Any]:
    """The answer to one authenticated request (an ``error`` field when refused). Every
    request but ``hello`` repeats the nonce the server gave this connection in ``hello``."""
    answer: dict[str, Any] = {"session": body.get("session"), "seq": body.get("seq")}
    op, nonce = body.get("op"), str(body.get("nonce", ""))
    if op not in ("watch", "fetch", "hello", "send"):
        return {**answer, "error": f"unknown request {str(op)[:40]!r}"}
    if op == "hello":
        return {**answer, "port": recorder.port, "server_nonce": client.nonce}
    if body.get("server_nonce") != client.nonce:
        return {**answer, "error": "a request repeats this connection's nonce (ask hello first)"}
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
    except (ValueError, TypeError, OverflowError, struct.error) as e:
        return {**answer, "error": str(e)[:200] or type(e).__name__}
    except OSError as e:  # sending the crafted segment failed
        return {**answer, "error": f"cannot send: {e.strerror or e}"}


def serve(port: int, control_port: int, secret: bytes, ready=None) -> None:
    """Run until killed: the MPTCP data port, the packet watch, the control channel."""
    recorder = Recorder(port)
    selector = selectors.DefaultSelector()
    for sock in open_listeners(port):
        selector.register(sock, selectors.EVENT_READ, ("listener", None))
    for sock in open_listeners(control_port, protocol=0):  # (plain TCP)
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
                conn = accept(sock, data_connections < MAX_CONNECTIONS)
                if conn is not None:
                    selector.register(conn, selectors.EVENT_READ, ("data", None))
                    data_connections += 1
            elif kind == "data":
                if not read_some(sock):
                    drop(sock)
                    data_connections -= 1
            elif kind == "control-listener":
                conn = accept(sock, len(clients) < MAX_CLIENTS)
                if conn is not None:
                    now = time.monotonic()
                    clients[conn] = ControlClient(conn, now, now)
                    selector.register(conn, selectors.EVENT_READ, ("control", None))
            elif kind == "control":
                _serve_control(recorder, clients[sock], secret, drop)
        now = time.monotonic()
        for sock, c in list(clients.items()):
            if now - c.last > IDLE_SECONDS or (
                not c.authenticated and now - c.opened > AUTH_SECONDS
            ):
                drop(sock)
        recorder.expire()


def _serve_control(recorder: Recorder, client: ControlClient, secret: bytes, drop) -> None:
    """What a control connection sent, read without blocking; each complete request is
    checked and answered. A message that fails its check, or breaks the session's order,
    gets the plain refusal and ends the connection; so does a line longer than allowed."""
    try:
        chunk = client.sock.recv(65536)
    except (BlockingIOError, InterruptedError):
        return
    except OSError:
        chunk = b""
    if not chunk:
        drop(client.sock)
        return
    client.buffer += chunk
    if len(client.buffer) > control.MAX_LINE:
        drop(client.sock)
        return
    while b"\n" in client.buffer:
        line, _, client.buffer = client.buffer.partition(b"\n")
        try:
            body = control.open_sealed(secret, line, "request")
            session, seq = body.get("session"), body.get("seq")
            if not isinstance(session, str) or not isinstance(seq, int) or isinstance(seq, bool):
                raise control.Tampered("no session or sequence number")
            if client.session is None:
                client.session = session
            if session != client.session or seq <= client.seq:
                raise control.Tampered("replayed or reordered")
        except control.Tampered:  # said in plain words (a forged notice only stops a report)
            _send(client.sock, control.REFUSED)
            drop(client.sock)
            return
        client.seq, client.last, client.authenticated = seq, time.monotonic(), True
        if not _send(client.sock, control.seal(secret, handle(recorder, client, body), "answer")):
            drop(client.sock)
            return


def _send(sock: socket.socket, data: bytes, timeout: float = 2.0) -> bool:
    """Send a whole answer within the deadline (the loop waits at most that long)."""
    try:
        sock.setblocking(True)
        sock.settimeout(timeout)
        sock.sendall(data)
        sock.setblocking(False)
        return True
    except OSError:
        return False
