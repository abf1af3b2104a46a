"""Traffic between a connected client and server socket, both directions at once, hashed.

One select loop drives both sockets, non-blocking: every operation is bounded by the
overall deadline, and a transfer that makes no progress for ``stall_timeout`` ends as a stall
with what was delivered so far. A stall, a reset or changed data is a result, not an error.
Neither side shuts its socket down: the subflows are still there to be described after.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from mbtest.host import signals

CHUNK = 1 << 16
BLOCK = os.urandom(1 << 20)  # data is this block repeated: cheap to make, hard to fake


@dataclass
class Stream:
    """One direction of the transfer."""

    direction: str  # "c>s" or "s>c"
    requested: int
    block: bytes = BLOCK
    chunk: int = CHUNK
    sent: int = 0
    received: int = 0
    done_sending: bool = False
    eof: bool = False
    error: str | None = None
    _sent_hash: Any = field(default_factory=hashlib.sha256, repr=False)
    _recv_hash: Any = field(default_factory=hashlib.sha256, repr=False)

    def next_chunk(self) -> memoryview:
        offset = self.sent % len(self.block)
        size = min(self.chunk, self.requested - self.sent, len(self.block) - offset)
        return memoryview(self.block)[offset : offset + size]

    @property
    def complete(self) -> bool:
        return self.received >= self.requested and self.done_sending

    def summary(self) -> dict[str, Any]:
        sent_hash, recv_hash = self._sent_hash.hexdigest(), self._recv_hash.hexdigest()
        return {
            "direction": self.direction,
            "requested": self.requested,
            "sent": self.sent,
            "received": self.received,
            "sha256_sent": sent_hash,
            "sha256_received": recv_hash,
            "intact": self.received == self.requested == self.sent and sent_hash == recv_hash,
            "changed": self.received == self.sent and sent_hash != recv_hash,
            "error": self.error,
        }


@dataclass
class TransferResult:
    streams: list[dict[str, Any]]
    stalled: bool
    seconds: float
    stall_after: float | None = None  # seconds of no progress that ended it

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    @property
    def intact(self) -> bool:
        return not self.stalled and all(s["intact"] for s in self.streams)


def transfer(
    client: socket.socket,
    server: socket.socket,
    c2s: int,
    s2c: int,
    stall_timeout: float = 5.0,
    deadline: float = 60.0,
    block: bytes = BLOCK,
    chunk: int = CHUNK,
) -> TransferResult:
    """Send c2s bytes client to server and s2c back, concurrently; the data is ``block``
    repeated (random by default; text for content-aware middleboxes)."""
    streams = {"c>s": Stream("c>s", c2s, block, chunk), "s>c": Stream("s>c", s2c, block, chunk)}
    if chunk < CHUNK:  # small writes as small segments (an FTP-like control exchange)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ends = {"c>s": (client, server), "s>c": (server, client)}
    for sock in (client, server):
        sock.setblocking(False)
    start = last_progress = time.monotonic()
    stalled = False
    while not all(s.complete or s.error for s in streams.values()):
        signals.check()
        now = time.monotonic()
        if now - last_progress > stall_timeout or now - start > deadline:
            stalled = True
            break
        readers, writers = [], []
        for name, stream in streams.items():
            sender, receiver = ends[name]
            if stream.error:
                continue
            if not stream.done_sending:
                writers.append(sender)
            if not stream.eof and stream.received < stream.requested:
                readers.append(receiver)
        wait = min(0.2, stall_timeout)
        readable, writable, _ = select.select(readers, writers, [], wait)
        for name, stream in streams.items():
            sender, receiver = ends[name]
            try:
                if sender in writable and not stream.done_sending:
                    chunk = stream.next_chunk()
                    n = sender.send(chunk)
                    stream._sent_hash.update(chunk[:n])
                    stream.sent += n
                    last_progress = time.monotonic()
                    if stream.sent >= stream.requested:
                        stream.done_sending = True
                if receiver in readable:
                    data = receiver.recv(CHUNK)
                    if not data:
                        stream.eof = True
                        if stream.received < stream.requested:
                            stream.error = f"connection closed after {stream.received} bytes"
                    else:
                        stream._recv_hash.update(data)
                        stream.received += len(data)
                        last_progress = time.monotonic()
            except (BlockingIOError, InterruptedError):
                continue
            except OSError as e:
                stream.error = f"{e.strerror or e}"
    elapsed = time.monotonic() - start
    return TransferResult(
        [s.summary() for s in streams.values()],
        stalled,
        round(elapsed, 4),
        round(stall_timeout, 3) if stalled else None,
    )
