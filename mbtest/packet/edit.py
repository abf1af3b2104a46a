"""Editable IPv4/IPv6 TCP packets at the byte level, for middlebox behaviours.

Editing works on a bytearray: changing the options or the payload fixes the data offset and
the IP lengths, and ``to_bytes`` recomputes the IPv4 header checksum and the TCP checksum,
so that every packet a behaviour emits is well-formed unless the behaviour says otherwise.
"""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from mbtest.errors import PacketError
from mbtest.mptcp.crypto import ones_complement_sum
from mbtest.mptcp.options import KIND as MPTCP_KIND
from mbtest.packet.ip import TCP, locate
from mbtest.packet.names import EOL, NOP, TcpFlags


@dataclass(frozen=True)
class OptionSpan:
    """One TCP option inside the options field: its kind, where it starts and ends."""

    kind: int
    start: int
    end: int

    def subtype(self, raw: bytes) -> int | None:
        if self.kind == MPTCP_KIND and self.end - self.start >= 3:
            return raw[self.start + 2] >> 4
        return None


def option_spans(raw: bytes | bytearray, cut: bool = False) -> list[OptionSpan]:
    """Every option of a TCP options field with its position (EOL ends the list).

    ``cut``: the field may be cut short (a quote in an ICMP error): the list ends before an
    option that runs past the end, instead of raising PacketError.
    """
    spans, pos = [], 0
    while pos < len(raw):
        kind = raw[pos]
        if kind in (EOL, NOP):
            spans.append(OptionSpan(kind, pos, pos + 1))
            pos += 1
            if kind == EOL:
                break
            continue
        if pos + 1 >= len(raw) or raw[pos + 1] < 2 or pos + raw[pos + 1] > len(raw):
            if cut:
                break
            raise PacketError(f"TCP option kind {kind} at offset {pos} runs past the header")
        spans.append(OptionSpan(kind, pos, pos + raw[pos + 1]))
        pos += raw[pos + 1]
    return spans


class TcpPacket(TcpFlags):
    """A mutable IPv4 or IPv6 packet carrying TCP."""

    def __init__(self, data: bytes | bytearray):
        self.buf = bytearray(data)
        header = locate(self.buf)
        if header.protocol != TCP or header.later_fragment:
            raise PacketError("not TCP")
        self.version, self.ip_len = header.version, header.header_len
        if header.end < self.ip_len + 20:
            raise PacketError("TCP header truncated")
        if self.tcp_header_len < 20 or self.ip_len + self.tcp_header_len > header.end:
            raise PacketError("TCP data offset is invalid")

    # --- addresses and ports ---------------------------------------------------------------

    @property
    def src(self) -> str:
        if self.version == 4:
            return socket.inet_ntop(socket.AF_INET, bytes(self.buf[12:16]))
        return socket.inet_ntop(socket.AF_INET6, bytes(self.buf[8:24]))

    @property
    def dst(self) -> str:
        if self.version == 4:
            return socket.inet_ntop(socket.AF_INET, bytes(self.buf[16:20]))
        return socket.inet_ntop(socket.AF_INET6, bytes(self.buf[24:40]))

    def endpoints(self) -> tuple[bytes, bytes]:
        """Raw (address + port) of the source and of the destination: cheap flow keys."""
        buf, t = self.buf, self.ip_len
        if self.version == 4:
            return bytes(buf[12:16] + buf[t : t + 2]), bytes(buf[16:20] + buf[t + 2 : t + 4])
        return bytes(buf[8:24] + buf[t : t + 2]), bytes(buf[24:40] + buf[t + 2 : t + 4])

    @property
    def payload_length(self) -> int:
        return self._ip_end() - self.ip_len - self.tcp_header_len

    def _u16(self, at: int) -> int:
        return struct.unpack_from("!H", self.buf, self.ip_len + at)[0]

    def _u32(self, at: int) -> int:
        return struct.unpack_from("!I", self.buf, self.ip_len + at)[0]

    @property
    def sport(self) -> int:
        return self._u16(0)

    @property
    def dport(self) -> int:
        return self._u16(2)

    @property
    def seq(self) -> int:
        return self._u32(4)

    @seq.setter
    def seq(self, value: int) -> None:
        struct.pack_into("!I", self.buf, self.ip_len + 4, value & 0xFFFFFFFF)

    @property
    def ack(self) -> int:
        return self._u32(8)

    @ack.setter
    def ack(self, value: int) -> None:
        struct.pack_into("!I", self.buf, self.ip_len + 8, value & 0xFFFFFFFF)

    @property
    def flags(self) -> int:
        return self.buf[self.ip_len + 13]

    @property
    def window(self) -> int:
        return self._u16(14)

    @window.setter
    def window(self, value: int) -> None:
        struct.pack_into("!H", self.buf, self.ip_len + 14, value & 0xFFFF)

    # --- options and payload ---------------------------------------------------------------

    @property
    def tcp_header_len(self) -> int:
        return (self.buf[self.ip_len + 12] >> 4) * 4

    @property
    def options(self) -> bytearray:
        return self.buf[self.ip_len + 20 : self.ip_len + self.tcp_header_len]

    @options.setter
    def options(self, raw: bytes | bytearray) -> None:
        raw = bytearray(raw)
        if len(raw) % 4:
            raw += bytes(4 - len(raw) % 4)  # EOL padding
        if len(raw) > 40:
            raise PacketError(f"TCP options of {len(raw)} bytes do not fit in 40")
        start, end = self.ip_len + 20, self.ip_len + self.tcp_header_len
        self.buf[start:end] = raw
        self.buf[self.ip_len + 12] = ((20 + len(raw)) // 4) << 4 | (
            self.buf[self.ip_len + 12] & 0x0F
        )
        self._fix_length()

    @property
    def payload(self) -> bytearray:
        return self.buf[self.ip_len + self.tcp_header_len : self._ip_end()]

    @payload.setter
    def payload(self, data: bytes | bytearray) -> None:
        self.buf[self.ip_len + self.tcp_header_len : self._ip_end()] = data
        self._fix_length()

    def _ip_end(self) -> int:
        if self.version == 4:
            return min(len(self.buf), struct.unpack_from("!H", self.buf, 2)[0])
        return min(len(self.buf), 40 + struct.unpack_from("!H", self.buf, 4)[0])

    def _fix_length(self) -> None:
        if self.version == 4:
            struct.pack_into("!H", self.buf, 2, len(self.buf))
        else:
            struct.pack_into("!H", self.buf, 4, len(self.buf) - 40)

    def mptcp_spans(self) -> list[OptionSpan]:
        return [s for s in option_spans(self.options) if s.kind == MPTCP_KIND]

    # --- checksums ---------------------------------------------------------------------------

    def tcp_checksum(self) -> int:
        """The correct TCP checksum of the packet as it stands."""
        segment = bytearray(self.buf[self.ip_len : self._ip_end()])
        segment[16:18] = b"\0\0"
        if self.version == 4:
            pseudo = bytes(self.buf[12:20]) + struct.pack("!BBH", 0, 6, len(segment))
        else:
            pseudo = bytes(self.buf[8:40]) + struct.pack("!I3xB", len(segment), 6)
        return (~ones_complement_sum(pseudo + segment)) & 0xFFFF

    def patch(self, start: int, new: bytes) -> None:
        """Overwrite bytes inside the TCP segment (same length) and update the TCP checksum
        incrementally (RFC 1624): a few changed bytes cost a few additions, not a full sum."""
        base = self.ip_len
        first = base + ((start - base) & ~1)
        last = base + ((start + len(new) - base + 1) & ~1)
        old_words = bytes(self.buf[first:last]).ljust(last - first, b"\0")
        self.buf[start : start + len(new)] = new
        new_words = bytes(self.buf[first:last]).ljust(last - first, b"\0")
        field = base + 16
        old_sum = struct.unpack_from("!H", self.buf, field)[0]
        total = (~old_sum & 0xFFFF) + (~ones_complement_sum(old_words) & 0xFFFF)
        total = ones_complement_sum(new_words, total)
        struct.pack_into("!H", self.buf, field, ~total & 0xFFFF)

    def checksums_valid(self) -> bool:
        ok = self._u16(16) == self.tcp_checksum()
        if self.version == 4:
            ok = ok and ones_complement_sum(bytes(self.buf[: self.ip_len])) == 0xFFFF
        return ok

    def fix_ip_checksum(self) -> None:
        if self.version == 4:
            self.buf[10:12] = b"\0\0"
            header_sum = ones_complement_sum(bytes(self.buf[: self.ip_len]))
            struct.pack_into("!H", self.buf, 10, ~header_sum & 0xFFFF)

    def to_bytes(self) -> bytes:
        """The packet with its IPv4 header checksum and TCP checksum recomputed."""
        self.fix_ip_checksum()
        struct.pack_into("!H", self.buf, self.ip_len + 16, self.tcp_checksum())
        return bytes(self.buf)


def rewrite_options(raw: bytes | bytearray, spans: list[OptionSpan], mode: str) -> bytearray:
    """The options field with the given options replaced by NOPs, removed, or cut by an EOL.

    ``remove`` shrinks the field (the caller's header shrinks with it, padded to 4 bytes);
    ``eol`` puts an End of Option List where the first of them was, zeroing the rest of the
    field, as the middlebox in the MPTCP experience draft did.
    """
    out = bytearray(raw)
    if not spans:
        return out
    if mode == "nop":
        for span in spans:
            out[span.start : span.end] = bytes([NOP]) * (span.end - span.start)
    elif mode == "remove":
        for span in sorted(spans, key=lambda s: s.start, reverse=True):
            del out[span.start : span.end]
    elif mode == "eol":
        first = min(s.start for s in spans)
        out[first:] = bytes(len(out) - first)
    else:
        raise ValueError(f"unknown option rewrite mode {mode!r}")
    return out
