"""What a probe file gets: the target, fresh ports, usual TCP options, and userspace MPTCP
handshakes whose keys, tokens and sequence numbers later probe segments can use.

Everything the session opens (reserved ports, connections at the target, firewall rules)
is closed by ``close``, which the runner calls however the probe ends.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mbtest.errors import MbtestError, PacketError
from mbtest.host import signals
from mbtest.mptcp import crypto
from mbtest.mptcp.options import Dss, MpCapable, MpFastclose, MptcpOption
from mbtest.packet.headers import TcpSegment
from mbtest.probe import wire
from mbtest.probe.guard import RstGuard
from mbtest.probe.rawio import RawSockets

SETUP_TTL = 64


class ProbeSetupError(MbtestError):
    """A stateful probe could not set up its connection with the target; ``silent`` when
    the target never answered (otherwise it answered in a way the setup cannot use: a RST,
    or options the path or the target left out)."""

    def __init__(self, message: str, silent: bool = False):
        super().__init__(message)
        self.silent = silent


@dataclass
class Connection:
    """An MPTCP connection with the target, set up from userspace (RFC 8684 §3.1, v1)."""

    session: Session
    sport: int
    iss: int  # our initial sequence number
    irs: int  # the target's
    local_key: int
    remote_key: int
    checksums: bool  # DSS checksums negotiated (flag A from either side)
    ts_recent: int | None  # the target's last TSval, None without timestamps
    sent_data: int = 0

    @property
    def remote_token(self) -> int:
        return crypto.token(self.remote_key)

    @property
    def local_idsn(self) -> int:
        return crypto.idsn(self.local_key)

    @property
    def remote_idsn(self) -> int:
        return crypto.idsn(self.remote_key)

    def segment(
        self,
        *mptcp: MptcpOption,
        payload: bytes = b"",
        flags: str = "A",
        check: Callable[[TcpSegment], str | None] | None = None,
    ) -> wire.Segment:
        """A segment inside the connection, the next data in sequence (swept by TSval)."""
        parts: list[bytes | MptcpOption] = []
        if self.ts_recent is not None:
            parts.append(wire.timestamps(self.session.tsval(), self.ts_recent))
        seg = wire.Segment(
            self.session.source,
            self.session.target,
            self.sport,
            self.session.port,
            (self.iss + 1 + self.sent_data) & 0xFFFFFFFF,
            (self.irs + 1) & 0xFFFFFFFF,
            flags,
            options=b"",
            payload=payload,
            vary="tsval",
            check=check,
        )
        self.sent_data += len(payload)
        return seg.with_options(wire.options_bytes([*parts, *mptcp]))

    def data_mapping(self, payload: bytes) -> Dss:
        """A DSS carrying a data ack and the mapping of `payload` as the next data, with its
        checksum when checksums are in use."""
        dsn = (self.local_idsn + 1 + self.sent_data) & (2**64 - 1)
        subflow_seq = 1 + self.sent_data
        checksum = (
            crypto.dss_checksum(dsn, subflow_seq, len(payload), payload) if self.checksums else None
        )
        return Dss(
            data_ack=(self.remote_idsn + 1) & 0xFFFFFFFF,
            data_ack_8_bytes=False,
            dsn=dsn,
            subflow_seq=subflow_seq,
            data_length=len(payload),
            checksum=checksum,
        )

    def data(self, payload: bytes, *mptcp: MptcpOption) -> wire.Segment:
        """The next data segment (PSH, ACK) with the given MPTCP options."""
        return self.segment(*mptcp, payload=payload, flags="PA")

    def mp_capable_data(self, payload: bytes) -> MpCapable:
        """The MP_CAPABLE data form (§3.1, version 1): both keys and the data-level length
        of the first data, with its checksum when checksums are in use."""
        checksum = None
        if self.checksums:
            dsn = (self.local_idsn + 1) & (2**64 - 1)
            checksum = crypto.dss_checksum(dsn, 1, len(payload), payload)
        return MpCapable(
            version=1,
            checksum_required=self.checksums,
            sender_key=self.local_key,
            receiver_key=self.remote_key,
            data_length=len(payload),
            checksum=checksum,
        )

    def data_end(self) -> int:
        """The data sequence number just after everything sent so far."""
        return (self.local_idsn + 1 + self.sent_data) & (2**64 - 1)

    def close(self) -> None:
        """Tell the target the connection is over: a RST carrying MP_FASTCLOSE (§3.5)."""
        seg = wire.Segment(
            self.session.source,
            self.session.target,
            self.sport,
            self.session.port,
            (self.iss + 1 + self.sent_data) & 0xFFFFFFFF,
            (self.irs + 1) & 0xFFFFFFFF,
            "RA",
            options=wire.options_bytes([MpFastclose(receiver_key=self.remote_key)]),
        )
        self.session.send(seg)


@dataclass
class TargetState:
    """What the probes of one run learnt about their target, shared between them: once one
    handshake went unanswered through all its tries, the others stop asking."""

    silent: bool = False


@dataclass
class Session:
    io: RawSockets
    guard: RstGuard
    target: str
    port: int
    source: str
    timeout: float = 2.0
    rng: random.Random = field(default_factory=random.Random)
    notes: list[str] = field(default_factory=list)
    connections: list[Connection] = field(default_factory=list)
    _ports: list[socket.socket] = field(default_factory=list)
    target_state: TargetState = field(default_factory=TargetState)
    _ts_origin: float = field(default_factory=time.monotonic)
    _ts_base: int = 0
    # (direction, segment, when) for every segment sent and answer read: a conformance
    # probe records its whole exchange, the handshake's packets included
    recorder: Callable[[str, Any, float], None] | None = None
    _labels: dict[int, int] = field(default_factory=dict)  # local port -> IPv6 flow label

    def __post_init__(self) -> None:
        self._ts_base = self.rng.randrange(1 << 31)

    @property
    def version(self) -> int:
        return self.io.version

    def note(self, text: str) -> None:
        """Something the reader of the result should know (a fallback the probe took...)."""
        self.notes.append(text)

    def tsval(self) -> int:
        return (self._ts_base + int((time.monotonic() - self._ts_origin) * 1000)) & 0xFFFFFFFF

    def new_port(self) -> int:
        """A local port no other socket uses, its stray RSTs dropped while the probe runs
        (one the run reserved beforehand when there is one left)."""
        reserved = self.guard.take(self.source, self.target, self.port)
        if reserved is not None:
            return reserved
        family = socket.AF_INET if self.version == 4 else socket.AF_INET6
        holder = socket.socket(family, socket.SOCK_STREAM)
        holder.bind((self.source, 0))
        self._ports.append(holder)
        port = holder.getsockname()[1]
        self.guard.protect(self.source, port, self.target, self.port)
        return port

    def usual_options(self) -> list[bytes]:
        """MSS, SACK permitted, timestamps and window scale, laid out as Linux does."""
        mss = 1460 if self.version == 4 else 1440
        return [wire.mss(mss), wire.sack_permitted_timestamps(self.tsval()), wire.window_scale(7)]

    def syn(
        self,
        *mptcp: MptcpOption,
        sport: int | None = None,
        check: Callable[[TcpSegment], str | None] | None = None,
    ) -> wire.Segment:
        """A SYN with the usual options and the given MPTCP options (swept by sequence
        number and TSval)."""
        options = wire.options_bytes([*self.usual_options(), *mptcp])
        return wire.Segment(
            self.source,
            self.target,
            sport or self.new_port(),
            self.port,
            self.rng.randrange(1 << 32),
            0,
            "S",
            check=check,
        ).with_options(options)

    def flow_label(self, sport: int) -> int:
        """One IPv6 flow label per flow (RFC 6437), its handshake and its sweep alike: a
        router balancing flows by label (ECMP) keeps the whole connection on one path."""
        if sport not in self._labels:
            self._labels[sport] = self.rng.randrange(1, 1 << 20)
        return self._labels[sport]

    def send(self, seg: wire.Segment, ttl: int = SETUP_TTL) -> float:
        ident = self.flow_label(seg.sport) if seg.version == 6 else self.rng.randrange(1, 0xFFFF)
        sent_at = self.io.send(wire.packet(seg, ttl, ident, 0), seg.dst)
        if self.recorder is not None:
            self.recorder("sent", seg, sent_at)
        return sent_at

    def exchange(
        self, seg: wire.Segment, want: Callable[[TcpSegment], bool], tries: int = 3
    ) -> TcpSegment | None:
        """Send a setup segment and wait for the target's answer that `want` accepts; give up
        early when another probe of the run found the target silent."""
        heard = False
        for _ in range(tries):
            if self.target_state.silent and not heard:
                return None
            self.send(seg)
            end = time.monotonic() + self.timeout
            while time.monotonic() < end and not (self.target_state.silent and not heard):
                signals.check()
                for arrival in self.io.receive(end):
                    got = arrival.tcp
                    if (
                        got is None
                        or got.src != self.target
                        or got.sport != self.port
                        or got.dport != seg.sport
                    ):
                        continue
                    heard = True
                    if self.recorder is not None:
                        self.recorder("answer", got, arrival.time)
                    try:
                        got.options()
                    except PacketError as e:  # an answer that cannot be read: noted, skipped
                        self.note(f"an answer from {self.target} was malformed: {e}")
                        continue
                    if want(got):
                        return got
        if not heard:
            self.target_state.silent = True
        return None

    def handshake(self, checksums: bool = False, third_ack: str = "mp_capable") -> Connection:
        """A full MP_CAPABLE v1 handshake with the target, or ProbeSetupError saying why not.
        ``third_ack``: "mp_capable" (both keys, as RFC 8684 §3.1 says), "plain" (an ACK
        without MP_CAPABLE, as when a middlebox strips it) or "none" (not sent, as if lost:
        the next segment the probe sends completes the handshake)."""
        syn = self.syn(MpCapable(version=1, checksum_required=checksums))
        answer = self.exchange(
            syn, lambda s: s.rst or (s.syn and s.is_ack and s.ack == (syn.seq + 1) & 0xFFFFFFFF)
        )
        if answer is None:
            raise ProbeSetupError(
                f"{self.target} port {self.port} did not answer an MP_CAPABLE SYN", silent=True
            )
        if answer.rst:
            raise ProbeSetupError(f"{self.target} refused port {self.port} (RST)")
        mpc = next((o for o in answer.mptcp_options() if isinstance(o, MpCapable)), None)
        if mpc is None or mpc.sender_key is None:
            self.send(
                wire.Segment(self.source, self.target, syn.sport, self.port, answer.ack, flags="R")
            )
            raise ProbeSetupError(
                f"the SYN/ACK from {self.target} port {self.port} carries no MP_CAPABLE: the path "
                "strips it or the target does not do MPTCP (see the mp_capable probe)"
            )
        ts_recent = None
        for kind, value in answer.options():
            if kind == 8 and len(value) == 8:
                ts_recent = int.from_bytes(value[:4], "big")
        conn = Connection(
            self,
            syn.sport,
            syn.seq,
            answer.seq,
            self.rng.randrange(1, 1 << 64),
            mpc.sender_key,
            checksums or mpc.checksum_required,
            ts_recent,
        )
        third = MpCapable(
            version=1,
            checksum_required=checksums,
            sender_key=conn.local_key,
            receiver_key=conn.remote_key,
        )
        if third_ack == "mp_capable":
            self.send(conn.segment(third))
        elif third_ack == "plain":
            self.send(conn.segment())
        self.connections.append(conn)
        return conn

    def close(self) -> None:
        for conn in self.connections:
            with contextlib.suppress(OSError):
                conn.close()
        self.connections.clear()
        for holder in self._ports:
            holder.close()
        self._ports.clear()
