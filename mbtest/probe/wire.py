"""Pure: the segments a probe sends, as bytes, and the plain TCP options around MPTCP.

A ``Segment`` is everything about one probe packet except what changes per TTL (the TTL or
hop limit, the IPv4 ID or IPv6 flow label, and the key the probe varies); ``packet`` turns
it into one wire-ready IPv4 or IPv6 packet with valid checksums.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable
from dataclasses import dataclass, field, replace

from mbtest.errors import MbtestError
from mbtest.mptcp.options import MptcpOption, encode
from mbtest.packet.edit import TcpPacket
from mbtest.packet.headers import TcpSegment
from mbtest.packet.names import flag_bits

# --- plain TCP options (kind, value) ------------------------------------------------------


def mss(value: int) -> bytes:
    return struct.pack("!BBH", 2, 4, value)


def window_scale(shift: int) -> bytes:
    return bytes((1, 3, 3, shift))  # with its usual leading NOP


def sack_permitted_timestamps(tsval: int, tsecr: int = 0) -> bytes:
    """SACK permitted and timestamps in the 12 bytes Linux lays them out in."""
    return struct.pack("!BBBBII", 4, 2, 8, 10, tsval, tsecr)


def timestamps(tsval: int, tsecr: int) -> bytes:
    return struct.pack("!BBBBII", 1, 1, 8, 10, tsval, tsecr)


def options_bytes(parts: list[bytes | MptcpOption]) -> bytes:
    """Concatenate options (bytes or MPTCP dataclasses), padded with NOPs to 4 bytes."""
    raw = b"".join(encode(p) if isinstance(p, MptcpOption) else bytes(p) for p in parts)
    if len(raw) % 4:
        raw = b"\x01" * (4 - len(raw) % 4) + raw
    if len(raw) > 40:
        raise MbtestError(f"the probe's TCP options take {len(raw)} bytes, more than 40")
    return raw


# --- segments --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Segment:
    """One probe packet, but for its TTL and per-TTL keys."""

    src: str
    dst: str
    sport: int
    dport: int
    seq: int
    ack: int = 0
    flags: str = "S"
    window: int = 64240
    options: bytes = b""
    payload: bytes = b""
    vary: str = "seq"  # per-TTL key inside TCP: "seq" (stateless) or "tsval" (a connection)
    ts_offset: int | None = None  # where TSval sits in options (for vary="tsval")
    check: Callable[[TcpSegment], str | None] | None = field(default=None, compare=False)

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.src).version

    def with_options(self, options: bytes) -> Segment:
        return replace(self, options=options, ts_offset=tsval_offset(options))


def tsval_offset(options: bytes) -> int | None:
    """Byte offset of the TSval inside an options field, or None without timestamps."""
    pos = 0
    while pos < len(options):
        kind = options[pos]
        if kind == 0:
            return None
        if kind == 1:
            pos += 1
            continue
        if pos + 1 >= len(options) or options[pos + 1] < 2:
            return None
        if kind == 8 and options[pos + 1] == 10:
            return pos + 2
        pos += options[pos + 1]
    return None


def packet(seg: Segment, ttl: int, ip_id: int, key: int) -> bytes:
    """The wire bytes of a segment sent with this TTL, IP ID / flow label and key.

    ``key`` is added to the sequence number (stateless probes) and to the TSval (all probes
    with timestamps; inside a connection only there, as its sequence numbers must stay
    right), so that quotes that keep the TCP header but lose the IP ID, and packets whose
    sequence number a middlebox rewrote, can still be matched to their TTL.
    """
    seq, options = seg.seq, bytearray(seg.options)
    if seg.vary == "seq":
        seq = (seq + key) & 0xFFFFFFFF
    if seg.ts_offset is not None:  # (a stateless probe's TSval carries the key too: a second
        # 32-bit key, for where a middlebox rewrote the sequence number)
        tsval = struct.unpack_from("!I", options, seg.ts_offset)[0]
        struct.pack_into("!I", options, seg.ts_offset, (tsval + key) & 0xFFFFFFFF)
    tcp = (
        struct.pack(
            "!HHIIBBHHH",
            seg.sport,
            seg.dport,
            seq,
            seg.ack & 0xFFFFFFFF,
            ((20 + len(options)) // 4) << 4,
            flag_bits(seg.flags),
            seg.window,
            0,
            0,
        )
        + bytes(options)
        + seg.payload
    )
    src, dst = ipaddress.ip_address(seg.src), ipaddress.ip_address(seg.dst)
    if src.version == 4:
        ip = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(tcp),
            ip_id & 0xFFFF,
            0x4000,
            ttl,
            6,
            0,
            src.packed,
            dst.packed,
        )
    else:
        first = (6 << 28) | (ip_id & 0xFFFFF)
        ip = struct.pack("!IHBB16s16s", first, len(tcp), 6, ttl, src.packed, dst.packed)
    return TcpPacket(ip + tcp).to_bytes()
