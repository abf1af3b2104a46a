"""Decode the MPTCP options of every TCP packet in a capture.

Directions are named from the connection's SYN: ``c>s`` is from the side that sent it.
A malformed option or header becomes a record with an ``error``, so one bad packet never
hides the rest of the capture.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from typing import Any

from mbtest.errors import CodecError, PacketError
from mbtest.mptcp.fields import option_fields
from mbtest.mptcp.options import MptcpOption
from mbtest.packet.headers import TcpSegment, ip_packet, parse_tcp
from mbtest.packet.ip import ICMP, ICMPV6, locate
from mbtest.packet.pcap import Frame, read_frames
from mbtest.packet.quote import IcmpError, parse_icmp

Endpoint = tuple[str, int]


@dataclass(slots=True)
class PacketRecord:
    """One captured TCP packet and its MPTCP options."""

    frame: int
    time: float
    src: Endpoint
    dst: Endpoint
    direction: str  # "c>s", "s>c" or "?" when the SYN was not captured
    tcp_flags: str
    seq: int
    ack: int
    payload_length: int
    options: list[MptcpOption] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    segment: TcpSegment | None = None

    @property
    def flow(self) -> str:
        return f"{_fmt(self.src)} > {_fmt(self.dst)}"

    def to_json(self) -> dict[str, Any]:
        return {
            "frame": self.frame,
            "time": round(self.time, 6),
            "flow": self.flow,
            "direction": self.direction,
            "tcp_flags": self.tcp_flags,
            "seq": self.seq,
            "ack": self.ack,
            "payload_length": self.payload_length,
            "mptcp": [option_fields(o) for o in self.options],
            "errors": self.errors,
        }


def _fmt(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def iter_segments(
    frames: str | os.PathLike | Iterable[Frame],
) -> Iterator[tuple[int, float, TcpSegment | PacketError]]:
    """(frame number, time, segment or the error that stopped its parsing) for TCP frames
    of a capture file (a path) or of frames already read."""
    if isinstance(frames, (str, os.PathLike)):
        frames = read_frames(frames)
    for frame in frames:
        packet = ip_packet(frame)
        if packet is None:
            continue
        try:
            segment = parse_tcp(packet)
        except PacketError as e:
            yield frame.number, frame.time, e
            continue
        if segment is not None:
            yield frame.number, frame.time, segment


def decode_capture(
    path: str | os.PathLike | Iterable[Frame],
    only_mptcp: bool = True,
    keep_segments: bool = False,
    seen_options: dict[bytes, tuple[list[MptcpOption], list[str]]] | None = None,
) -> Iterator[PacketRecord]:
    """A record per TCP packet (per packet with MPTCP options when ``only_mptcp``) of a capture
    file or of frames already read. One malformed packet is one record with its errors.
    ``seen_options`` (options bytes -> what they decode to) lets the captures of one run
    decode a packet's options once: the client, both sides of the slot and the server see
    the same packet, with the same option bytes unless something on the way changed them
    (decoded options are immutable, so records may share them)."""
    directions: dict[tuple[Endpoint, Endpoint], str] = {}  # (from, to) -> c>s or s>c
    for number, stamp, seg in iter_segments(path):
        if isinstance(seg, PacketError):
            yield PacketRecord(number, stamp, ("?", 0), ("?", 0), "?", "", 0, 0, 0, [], [str(seg)])
            continue
        src, dst = (seg.src, seg.sport), (seg.dst, seg.dport)
        if seg.syn and not seg.is_ack:  # the SYN's sender is the client
            directions[src, dst], directions[dst, src] = "c>s", "s>c"
        direction = directions.get((src, dst), "?")
        known = seen_options.get(seg.options_raw) if seen_options is not None else None
        if known is not None:
            options, errors = list(known[0]), list(known[1])
        else:
            options, errors = [], []
            try:
                decoded = seg.mptcp_options(strict=False)
            except PacketError as e:
                decoded, errors = [], [str(e)]
            for item in decoded:
                if isinstance(item, CodecError):
                    errors.append(str(item))
                else:
                    options.append(item)
            if seen_options is not None:
                if len(seen_options) >= 65536:  # bounded, whatever the captures hold
                    seen_options.clear()
                seen_options[seg.options_raw] = (list(options), list(errors))
        if only_mptcp and not options and not errors:
            continue
        yield PacketRecord(
            number,
            stamp,
            src,
            dst,
            direction,
            seg.flag_string,
            seg.seq,
            seg.ack,
            len(seg.payload),
            options,
            errors,
            seg if keep_segments else None,
        )


_DECODED: dict[tuple[str, int, int], list[PacketRecord]] = {}
_SEEN_OPTIONS: dict[bytes, tuple[list[MptcpOption], list[str]]] = {}


def capture_records(path: str | os.PathLike) -> list[PacketRecord]:
    """Every TCP packet of a capture file, with its segment, decoded once per process: the
    run's timelines and the verdict's evidence read the same files one after the other.
    Keyed by path, size and modification time, so a rewritten file is decoded again."""
    info = os.stat(path)
    key = (os.path.abspath(path), info.st_size, info.st_mtime_ns)
    if key not in _DECODED:
        if len(_DECODED) >= 8:  # the captures of one cell, not of every cell of a session
            _DECODED.clear()
            _SEEN_OPTIONS.clear()
        records = decode_capture(
            path, only_mptcp=False, keep_segments=True, seen_options=_SEEN_OPTIONS
        )
        _DECODED[key] = list(records)
    return _DECODED[key]


@dataclass(frozen=True, slots=True)
class IcmpRecord:
    """An ICMP or ICMPv6 error in a capture, with the packet it quotes."""

    frame: int
    time: float
    src: str
    dst: str
    error: IcmpError

    @property
    def local(self) -> bool:
        """Sent by the host to itself: a packet refused before it left (too big, no route)."""
        return self.src == self.dst


def icmp_errors(path: str | os.PathLike | Iterable[Frame]) -> Iterator[IcmpRecord]:
    """Every ICMP / ICMPv6 error of a capture (a file or frames already read)."""
    frames = read_frames(path) if isinstance(path, (str, os.PathLike)) else path
    for frame in frames:
        packet = ip_packet(frame)
        if packet is None:
            continue
        try:
            header = locate(packet)
        except PacketError:
            continue
        if header.protocol not in (ICMP, ICMPV6) or header.later_fragment:
            continue
        family = socket.AF_INET if header.version == 4 else socket.AF_INET6
        src_at, size = (12, 4) if header.version == 4 else (8, 16)
        src = socket.inet_ntop(family, packet[src_at : src_at + size])
        dst = socket.inet_ntop(family, packet[src_at + size : src_at + 2 * size])
        error = parse_icmp(packet[header.header_len : header.end], src, header.version)
        if error is not None:
            yield IcmpRecord(frame.number, frame.time, src, dst, error)
