"""Where the transport header of an IPv4 or IPv6 packet starts: one bounds-checked walk
over the IP header (and IPv6 extension headers) for every view and edit of a packet."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from mbtest.errors import PacketError

IPV6_EXTENSIONS = {0, 43, 60}  # hop-by-hop, routing, destination options: (len + 1) * 8 bytes
IPV6_FRAGMENT = 44  # always 8 bytes
TCP, ICMP, ICMPV6 = 6, 1, 58


@dataclass(frozen=True, slots=True)
class IpHeader:
    version: int
    header_len: int  # bytes before the transport header
    protocol: int  # the transport protocol (after any IPv6 extension headers)
    end: int  # where the packet ends: its own length field, bounded by the bytes held
    later_fragment: bool  # a fragment other than the first: no transport header here


def locate(packet: bytes | bytearray) -> IpHeader:
    """The IP header of a packet; PacketError when it is malformed or cut short."""
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
        total, frag = struct.unpack_from("!H2xH", packet, 2)
        end = min(total, len(packet)) if total >= ihl else len(packet)
        return IpHeader(4, ihl, packet[9], end, bool(frag & 0x1FFF))
    if version == 6:
        if len(packet) < 40:
            raise PacketError(f"IPv6 header truncated: {len(packet)} bytes")
        plen = struct.unpack_from("!H", packet, 4)[0]
        end = min(40 + plen, len(packet)) if plen else len(packet)
        nxt, pos = packet[6], 40
        while nxt in IPV6_EXTENSIONS or nxt == IPV6_FRAGMENT:
            if nxt == IPV6_FRAGMENT:
                if pos + 8 > end:
                    raise PacketError("IPv6 fragment header truncated")
                if struct.unpack_from("!H", packet, pos + 2)[0] & 0xFFF8:
                    return IpHeader(6, pos + 8, packet[pos], end, True)
                nxt, pos = packet[pos], pos + 8
                continue
            if pos + 2 > end:
                raise PacketError("IPv6 extension header truncated")
            nxt, pos = packet[pos], pos + (packet[pos + 1] + 1) * 8
            if pos > end:
                raise PacketError("IPv6 extension header runs past the packet")
        return IpHeader(6, pos, nxt, end, False)
    raise PacketError(f"not an IP packet: version {version}")
