"""Byte-level IPv4 / IPv6 / TCP views: just the fields mbtest needs, no full dissection."""

from __future__ import annotations

import socket
import struct
from dataclasses import dataclass

from mbtest.errors import CodecError, PacketError
from mbtest.mptcp.options import KIND as MPTCP_KIND
from mbtest.mptcp.options import MptcpOption, decode_value
from mbtest.packet import pcap
from mbtest.packet.ip import TCP, locate
from mbtest.packet.names import TcpFlags, flag_letters

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
        return flag_letters(self.flags)

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
    """(kind, value) pairs of a TCP options field; EOL ends it, NOP has an empty value.
    (``option_spans`` read inline: this runs for every packet of every capture.)"""
    out: list[tuple[int, bytes]] = []
    pos, end = 0, len(raw)
    while pos < end:
        kind = raw[pos]
        if kind <= 1:  # EOL, NOP
            out.append((kind, b""))
            pos += 1
            if kind == 0:
                break
            continue
        length = raw[pos + 1] if pos + 1 < end else 0
        if length < 2 or pos + length > end:
            raise PacketError(f"TCP option kind {kind} at offset {pos} runs past the header")
        out.append((kind, bytes(raw[pos + 2 : pos + length])))
        pos += length
    return out


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
    header = locate(packet)
    if header.protocol != TCP or header.later_fragment:
        return None
    if header.version == 4:
        ttl, ip_id = packet[8], struct.unpack_from("!H", packet, 4)[0]
        src, dst = _address(packet[12:16]), _address(packet[16:20])
    else:
        ttl, ip_id = packet[7], struct.unpack_from("!I", packet, 0)[0] & 0xFFFFF
        src, dst = _address(packet[8:24]), _address(packet[24:40])
    segment = packet[header.header_len : header.end]
    return _parse_tcp_header(segment, header.version, src, dst, ttl, ip_id)


_TCP = struct.Struct("!HHIIBBHHH")
_NAMES: dict[bytes, str] = {}  # address bytes -> text: a capture holds few addresses


def _address(raw: bytes) -> str:
    name = _NAMES.get(raw)
    if name is None:
        if len(_NAMES) >= 4096:  # bounded, whatever a capture holds
            _NAMES.clear()
        family = socket.AF_INET if len(raw) == 4 else socket.AF_INET6
        name = _NAMES[raw] = socket.inet_ntop(family, raw)
    return name


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
