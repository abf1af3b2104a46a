"""What routers do to their own ICMP errors: many quote only the start of the offending
datagram, which hides every later field from a traceroute-style probe."""

from __future__ import annotations

import struct

from mbtest.errors import PacketError
from mbtest.middlebox.base import KERNEL, Behaviour
from mbtest.middlebox.params import Param

ERROR_TYPES = ("time-exceeded", "destination-unreachable")


class QuoteTrim(Behaviour):
    NAME = "quote-trim"
    ENGINE = KERNEL
    MODELS = (
        "a router quoting only the IP header and the first 8 bytes of the offending "
        "datagram in its ICMP errors (RFC 792's minimum, common on the Internet)"
    )
    DOES = (
        "cuts the quote of every ICMP time-exceeded and destination-unreachable the node "
        "sends itself to the inner IP header plus `bytes` bytes, fixing lengths and checksums"
    )
    EXPECTED = "nothing for endpoints; probes cannot see TCP options beyond this router"
    RFC = "RFC 792, RFC 1812 §4.3.2.3, RFC 4443 §3.3"
    TOUCHES_TRAFFIC = False  # endpoints never see it: it has no cell in the matrix
    PARAMS = (Param("bytes", "int", 8, "bytes after the inner IP header kept", (), 0, 1232),)

    def icmp_error_rules(self, sides: dict[str, str], queue: int) -> list[tuple[str, list[str]]]:
        """The node's own ICMP errors, on their way out."""
        out = []
        for tool, proto in (
            ("iptables", ["-p", "icmp", "--icmp-type"]),
            ("ip6tables", ["-p", "icmpv6", "--icmpv6-type"]),
        ):
            for kind in ERROR_TYPES:
                match = ["-t", "mangle", "-A", "OUTPUT", *proto, kind]
                out.append((tool, [*match, "-j", "NFQUEUE", "--queue-num", str(queue)]))
        return out

    def handle_icmp_error(self, data: bytes, inside) -> tuple[bytes | None, dict | None]:
        out = trim_quote(data, self.bytes)
        if out is None:
            return None, None
        entry = {
            "flow": "?",
            "direction": "s>c",
            "field": "icmp quote",
            "before": len(data) - _quote_start(data),
            "after": len(out) - _quote_start(out),
        }
        return out, entry


def _quote_start(packet: bytes) -> int:
    outer = (packet[0] & 0x0F) * 4 if packet[0] >> 4 == 4 else 40
    return outer + 8


def trim_quote(packet: bytes, keep: int) -> bytes | None:
    """An ICMP(v6) error whose quote is cut to the inner IP header plus ``keep`` bytes, with
    its lengths and checksums fixed; None when it is already that short. PacketError when
    the packet is not an ICMP error this node could have sent."""
    if len(packet) < 20:
        raise PacketError(f"an ICMP error of {len(packet)} bytes is too short")
    version = packet[0] >> 4
    if version == 4:
        outer = (packet[0] & 0x0F) * 4
        if outer < 20 or packet[9] != 1 or len(packet) < outer + 8 + 20:
            raise PacketError("not an IPv4 ICMP error with a quoted IPv4 header")
        inner = (packet[outer + 8] & 0x0F) * 4
        if inner < 20:
            raise PacketError("the quoted IPv4 header is shorter than 20 bytes")
    elif version == 6:
        outer, inner = 40, 40
        if packet[6] != 58 or len(packet) < outer + 8 + 40:
            raise PacketError("not an ICMPv6 error with a quoted IPv6 header")
    else:
        raise PacketError(f"IP version {version} is neither 4 nor 6")
    end = outer + 8 + inner + keep
    if len(packet) <= end:
        return None
    out = bytearray(packet[:end])
    icmp_length = end - outer
    out[outer + 2 : outer + 4] = b"\0\0"
    if version == 4:
        struct.pack_into("!H", out, 2, end)
        out[10:12] = b"\0\0"
        struct.pack_into("!H", out, 10, _checksum(bytes(out[:outer])))
        struct.pack_into("!H", out, outer + 2, _checksum(bytes(out[outer:])))
    else:
        struct.pack_into("!H", out, 4, icmp_length)
        pseudo = bytes(out[8:40]) + struct.pack("!I3xB", icmp_length, 58)
        struct.pack_into("!H", out, outer + 2, _checksum(pseudo + bytes(out[outer:])))
    return bytes(out)


def _checksum(data: bytes) -> int:
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF
