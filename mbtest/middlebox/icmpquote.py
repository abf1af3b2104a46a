"""Pure: forward an ICMP error through a NAT without translating the packet it quotes.

RFC 5508 (REQ-4) asks a NAT to translate the packet quoted inside an ICMP error back to
what the inside host sent, and Linux does. Some NATs only translate the outer destination,
so that hosts behind them (and tracebox-style probes) see their packets as the outside saw
them. ``retarget`` does that much: the outer destination becomes the inside host again;
the quote stays as the router sent it.
"""

from __future__ import annotations

import ipaddress
import struct
from collections.abc import Callable

from mbtest.mptcp.crypto import ones_complement_sum

Endpoint = tuple[str, int]


def quoted_source(data: bytes) -> Endpoint | None:
    """The source address and port of the TCP packet an ICMP error quotes."""
    version = data[0] >> 4 if data else 0
    if version == 4:
        ihl = (data[0] & 0x0F) * 4
        inner = data[ihl + 8 :]
        if len(inner) < 24 or inner[0] >> 4 != 4 or inner[9] != 6:
            return None
        inner_ihl = (inner[0] & 0x0F) * 4
        if len(inner) < inner_ihl + 2:
            return None
        address = str(ipaddress.IPv4Address(inner[12:16]))
        return address, struct.unpack_from("!H", inner, inner_ihl)[0]
    if version == 6:
        inner = data[48:]
        if len(inner) < 42 or inner[0] >> 4 != 6 or inner[6] != 6:
            return None
        return str(ipaddress.IPv6Address(inner[8:24])), struct.unpack_from("!H", inner, 40)[0]
    return None


def retarget(data: bytes, lookup: Callable[[Endpoint], Endpoint | None]) -> bytes | None:
    """The ICMP error addressed to the inside host whose translated source it quotes, or None
    when the quote is not of a translated connection."""
    source = quoted_source(data)
    inside = lookup(source) if source else None
    if inside is None:
        return None
    out = bytearray(data)
    address = ipaddress.ip_address(inside[0]).packed
    if out[0] >> 4 == 4:
        out[16:20] = address
        out[10:12] = b"\0\0"
        ihl = (out[0] & 0x0F) * 4
        struct.pack_into("!H", out, 10, ~ones_complement_sum(bytes(out[:ihl])) & 0xFFFF)
        return bytes(out)  # the ICMP checksum covers no address: unchanged
    out[24:40] = address
    message = bytearray(out[40:])
    message[2:4] = b"\0\0"
    pseudo = bytes(out[8:40]) + struct.pack("!I3xB", len(message), 58)
    struct.pack_into("!H", out, 42, ~ones_complement_sum(pseudo + bytes(message)) & 0xFFFF)
    return bytes(out)
