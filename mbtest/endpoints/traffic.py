"""Traffic between a connected client and server socket, both directions at once, hashed and
compared byte for byte with what was sent.

One select loop drives both sockets, non-blocking: every operation is bounded by the
overall deadline. When the transfer stops making progress, a judge (given by the caller,
who can read the senders' retransmission state) decides from evidence whether it is a
stall; a stall, a reset or changed data is a result, not an error. Neither side shuts its
socket down: the subflows are still there to be described after.
"""

from __future__ import annotations

import hashlib
import os
import select
import socket
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from mbtest.host import signals

CHUNK = 1 << 16
BLOCK = os.urandom(1 << 20)  # data is this block repeated: cheap to make, hard to fake
MAX_RANGES = 8  # changed ranges kept per direction (the count covers all of them)
QUIET = 0.3  # seconds without progress before the judge is asked

# judge(direction, quiet seconds) -> why it is a stall, DRAINED, or None to keep waiting
Judge = Callable[[str, float], str | None]
DRAINED = "drained"  # the network acknowledged everything sent: nothing more will arrive


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
    drained: bool = False  # sent and acknowledged, but fewer bytes arrived (a length change)
    changed_bytes: int = 0  # received bytes that differ from what was sent at that offset
    changed_ranges: list[list[int]] = field(default_factory=list)  # [start, end) offsets
    _sent_hash: Any = field(default_factory=hashlib.sha256, repr=False)
    _recv_hash: Any = field(default_factory=hashlib.sha256, repr=False)

    def next_chunk(self) -> memoryview:
        offset = self.sent % len(self.block)
        size = min(self.chunk, self.requested - self.sent, len(self.block) - offset)
        return memoryview(self.block)[offset : offset + size]

    def expected(self, offset: int, size: int) -> bytes:
        """What was sent at these stream offsets (the block repeated)."""
        out = bytearray()
        while len(out) < size:
            at = (offset + len(out)) % len(self.block)
            out += self.block[at : at + size - len(out)]
        return bytes(out)

    def take(self, data: bytes) -> None:
        """Bytes received: hashed, counted, and compared with what was sent there."""
        self._recv_hash.update(data)
        wanted = self.expected(self.received, len(data))
        if data != wanted:
            for i, (a, b) in enumerate(zip(data, wanted, strict=False)):
                if a != b:
                    self._mark(self.received + i)
            if len(data) > len(wanted):  # longer than sent (cannot happen: same size)
                self.changed_bytes += len(data) - len(wanted)
        self.received += len(data)

    def _mark(self, offset: int) -> None:
        self.changed_bytes += 1
        last = self.changed_ranges[-1] if self.changed_ranges else None
        if last is not None and last[1] == offset:
            last[1] += 1
        elif len(self.changed_ranges) < MAX_RANGES:
            self.changed_ranges.append([offset, offset + 1])

    @property
    def complete(self) -> bool:
        return self.done_sending and (self.received >= self.requested or self.drained)

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
            "changed_bytes": self.changed_bytes,
            "changed_ranges": self.changed_ranges,
            "drained": self.drained,
            "error": self.error,
        }


@dataclass
class TransferResult:
    streams: list[dict[str, Any]]
    stalled: bool
    seconds: float
    stall_after: float | None = None  # seconds of no progress that ended it
    stall_basis: str | None = None  # the evidence that made it a stall
    stalled_direction: str | None = None

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
    judge: Judge | None = None,
) -> TransferResult:
    """Send c2s bytes client to server and s2c back, concurrently; the data is ``block``
    repeated (random by default; text for content-aware middleboxes).

    Without a judge, no progress for ``stall_timeout`` is a stall; with one, the judge
    decides from evidence once the transfer has been quiet for a moment, and
    ``stall_timeout`` is not used. ``deadline`` bounds the whole transfer either way."""
    streams = {"c>s": Stream("c>s", c2s, block, chunk), "s>c": Stream("s>c", s2c, block, chunk)}
    if chunk < CHUNK:  # small writes as small segments (an FTP-like control exchange)
        for sock in (client, server):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    ends = {"c>s": (client, server), "s>c": (server, client)}
    for sock in (client, server):
        sock.setblocking(False)
    start = last_progress = time.monotonic()
    stalled, basis, which, quiet_at_stall = False, None, None, None
    while not all(s.complete or s.error for s in streams.values()):
        signals.check()
        now = time.monotonic()
        quiet = now - last_progress
        if now - start > deadline:
            stalled, basis = True, f"no completion within the bound of {deadline:g} s"
            which = _stuck(streams)
            break
        if judge is None and quiet > stall_timeout:
            stalled, basis, which = True, f"no progress for {stall_timeout:g} s", _stuck(streams)
            quiet_at_stall = stall_timeout
            break
        if judge is not None and quiet > QUIET:
            which = _stuck(streams)
            basis = judge(which, quiet) if which else None
            if basis == DRAINED and streams[which].done_sending:
                basis = None
                # everything sent was acknowledged; drained only once the receiver has
                # nothing left to read (a loop paused on a loaded machine finds the quiet
                # long enough before it has read what already arrived)
                if not select.select([ends[which][1]], [], [], 0)[0]:
                    streams[which].drained = True
                    continue
            if basis is not None and basis != DRAINED:
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
                    chunk_ = stream.next_chunk()
                    n = sender.send(chunk_)
                    stream._sent_hash.update(chunk_[:n])
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
                        stream.take(data)
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
        (quiet_at_stall or round(time.monotonic() - last_progress, 3)) if stalled else None,
        basis,
        which if stalled else None,
    )


def _stuck(streams: dict[str, Stream]) -> str | None:
    """The direction that has not completed (c>s first), or None."""
    for name, stream in streams.items():
        if not (stream.complete or stream.error):
            return name
    return None
