"""Byte-level IPv4 / IPv6 / TCP views: just the fields mbtest needs, no full dissection."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from mbtest.errors import CodecError, PacketError
from mbtest.mptcp.options import KIND as MPTCP_KIND
from mbtest.mptcp.options import MptcpOption, decode_value
from mbtest.packet import pcap
from mbtest.packet.edit import option_spans
from mbtest.packet.flags import TcpFlags

TCP_FLAG_NAMES = "FSRPAUEC"  # bit 0 (FIN) .. bit 7 (CWR)
_FLAG_STRINGS = tuple(
    "".join(c for i, c in enumerate(TCP_FLAG_NAMES) if flags & (1 << i)) for flags in range(256)
)
_IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options
_IPV6_FRAGMENT = 44
_ETH_VLAN = {0x8100, 0x88A8}


@dataclass(frozen=True, slots=True)
class TcpSegment(TcpFlags):
    """A TCP segment and the IP header fields around it."""

    ip_version: int
    src: str
    dst: str
    ttl: int
    ip_id: int  # IPv4 identification, IPv6 flow label
    sport: int
    dport: int
    seq: int
    ack: int
    flags: int
    window: int
    checksum: int
    urgent: int
    options_raw: bytes
    payload: bytes

    @property
    def flag_string(self) -> str:
        return _FLAG_STRINGS[self.flags & 0xFF]

    def options(self) -> list[tuple[int, bytes]]:
        return tcp_options(self.options_raw)

    def mptcp_options(self, strict: bool = False) -> list[MptcpOption | CodecError]:
        """The MPTCP options, decoded; a malformed one is returned as its CodecError."""
        found: list[MptcpOption | CodecError] = []
        for kind, value in tcp_options(self.options_raw):
            if kind == MPTCP_KIND:
                try:
                    found.append(decode_value(value, strict=strict))
                except CodecError as e:
                    found.append(e)
        return found


def tcp_options(raw: bytes) -> list[tuple[int, bytes]]:
    """(kind, value) pairs of a TCP options field; EOL ends it, NOP has an empty value."""
    return [(span.kind, bytes(raw[span.start + 2 : span.end]) if span.kind > 1 else b"")
            for span in option_spans(raw)]  # fmt: skip


def ip_packet(frame: pcap.Frame) -> bytes | None:
    """The IP packet inside a captured frame, or None for non-IP frames."""
    data, link = frame.data, frame.linktype
    if link == pcap.LINKTYPE_ETHERNET:
        if len(data) < 14:
            return None
        ethertype, pos = struct.unpack_from("!H", data, 12)[0], 14
        while ethertype in _ETH_VLAN and len(data) >= pos + 4:
            ethertype, pos = struct.unpack_from("!H", data, pos + 2)[0], pos + 4
        return data[pos:] if ethertype in (0x0800, 0x86DD) else None
    if link == pcap.LINKTYPE_LINUX_SLL:
        ok = len(data) >= 16 and struct.unpack_from("!H", data, 14)[0] in (0x0800, 0x86DD)
        return data[16:] if ok else None
    if link == pcap.LINKTYPE_LINUX_SLL2:
        ok = len(data) >= 20 and struct.unpack_from("!H", data, 0)[0] in (0x0800, 0x86DD)
        return data[20:] if ok else None
    if link in (pcap.LINKTYPE_RAW, pcap.LINKTYPE_IPV4, pcap.LINKTYPE_IPV6):
        return data
    if link == pcap.LINKTYPE_NULL:
        return data[4:] if len(data) > 4 else None
    return None


def parse_tcp(packet: bytes) -> TcpSegment | None:
    """The TCP segment of an IPv4 or IPv6 packet; None when it carries no TCP (or a
    non-first fragment); PacketError when the headers are malformed or cut short."""
    if not packet:
        raise PacketError("empty IP packet")
    version = packet[0] >> 4
    if version == 4:
        if len(packet) < 20:
            raise PacketError(f"IPv4 header truncated: {len(packet)} bytes")
        ihl = (packet[0] & 0x0F) * 4
        if ihl < 20 or len(packet) < ihl:
            raise PacketError(
                f"IPv4 header length {ihl} is invalid for a {len(packet)}-byte packet"
            )
        total, ip_id, frag, ttl, proto = struct.unpack_from("!2xHHHBB", packet, 0)
        if proto != 6 or frag & 0x1FFF:
            return None
        end = min(total, len(packet)) if total >= ihl else len(packet)
        src = socket.inet_ntop(socket.AF_INET, packet[12:16])
        dst = socket.inet_ntop(socket.AF_INET, packet[16:20])
        return _parse_tcp_header(packet[ihl:end], 4, src, dst, ttl, ip_id)
    if version == 6:
        if len(packet) < 40:
            raise PacketError(f"IPv6 header truncated: {len(packet)} bytes")
        first, plen, nxt, hlim = struct.unpack_from("!IHBB", packet, 0)
        pos, end = 40, min(40 + plen, len(packet)) if plen else len(packet)
        while nxt != 6:
            if nxt in _IPV6_EXTENSIONS:
                if pos + 2 > end:
                    raise PacketError("IPv6 extension header truncated")
                nxt, pos = packet[pos], pos + (packet[pos + 1] + 1) * 8
            elif nxt == _IPV6_FRAGMENT:
                if pos + 8 > end:
                    raise PacketError("IPv6 fragment header truncated")
                if struct.unpack_from("!H", packet, pos + 2)[0] & 0xFFF8:
                    return None
                nxt, pos = packet[pos], pos + 8
            else:
                return None
        src = socket.inet_ntop(socket.AF_INET6, packet[8:24])
        dst = socket.inet_ntop(socket.AF_INET6, packet[24:40])
        return _parse_tcp_header(packet[pos:end], 6, src, dst, hlim, first & 0xFFFFF)
    raise PacketError(f"not an IP packet: version {version}")


_TCP = struct.Struct("!HHIIBBHHH")


def parse_tcp_segment(seg: bytes, version: int, src: str, dst: str) -> TcpSegment:
    """A TCP segment read without its IP header (an IPv6 raw socket gives no header)."""
    return _parse_tcp_header(seg, version, src, dst, 0, 0)


def _parse_tcp_header(seg: bytes, ipv: int, src: str, dst: str, ttl: int, ip_id: int) -> TcpSegment:
    if len(seg) < 20:
        raise PacketError(f"TCP header truncated: {len(seg)} bytes from {src} to {dst}")
    sport, dport, seq, ack, off, flags, window, csum, urg = _TCP.unpack_from(seg, 0)
    hlen = (off >> 4) * 4
    if hlen < 20 or hlen > len(seg):
        raise PacketError(f"TCP data offset {hlen} is invalid for a {len(seg)}-byte segment")
    flags |= (off & 0x01) << 8  # the AE / NS bit
    return TcpSegment(
        ipv,
        src,
        dst,
        ttl,
        ip_id,
        sport,
        dport,
        seq,
        ack,
        flags,
        window,
        csum,
        urg,
        bytes(seg[20:hlen]),
        bytes(seg[hlen:]),
    )
