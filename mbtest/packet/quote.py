"""Pure: ICMP / ICMPv6 errors and the packet they quote, however little of it they quote.

Routers quote the packet that expired: RFC 792 asks for the IP header and 8 bytes, RFC 1812
for as much as fits in 576 bytes, RFC 4884 adds a length field so that extensions (MPLS
labels...) can follow the quote. ``View`` reads an IP/TCP packet field by field and says,
for each field, whether the quote reached it.
"""

from __future__ import annotations

import ipaddress
import socket
import struct
from collections.abc import Callable
from dataclasses import dataclass

from mbtest.mptcp.crypto import ones_complement_sum
from mbtest.packet.edit import option_spans

ICMP_TIME_EXCEEDED, ICMP_UNREACHABLE = 11, 3
ICMP6_TIME_EXCEEDED, ICMP6_UNREACHABLE, ICMP6_TOO_BIG = 3, 1, 2
_V4_UNREACHABLE = {0: "network unreachable", 1: "host unreachable", 2: "protocol unreachable",
                   3: "port unreachable", 4: "fragmentation needed", 9: "network prohibited",
                   10: "host prohibited", 13: "administratively prohibited"}  # fmt: skip
_V6_UNREACHABLE = {0: "no route", 1: "administratively prohibited", 3: "address unreachable",
                   4: "port unreachable", 5: "source address failed policy",
                   6: "reject route"}  # fmt: skip

QUOTE_CLASSES = ("none", "IP header only", "8 bytes", "partial", "full")


@dataclass(frozen=True)
class IcmpError:
    """An ICMP error from a router (or the target) with the packet it quotes."""

    router: str
    expired: bool  # time exceeded; otherwise unreachable
    type: int
    code: int
    quote: bytes  # the original datagram as quoted, RFC 4884 extensions cut off
    extensions: bool
    mtu: int | None = None  # "fragmentation needed" / "packet too big": the next-hop MTU

    @property
    def too_big(self) -> bool:
        v6 = ":" in self.router
        return (self.type == ICMP6_TOO_BIG) if v6 else (self.type == 3 and self.code == 4)

    @property
    def what(self) -> str:
        if self.expired:
            return "time exceeded"
        if ":" in self.router and self.type == ICMP6_TOO_BIG:
            return "packet too big"
        names = _V6_UNREACHABLE if ":" in self.router else _V4_UNREACHABLE
        return "unreachable: " + names.get(self.code, f"code {self.code}")


def parse_icmp(data: bytes, router: str, version: int) -> IcmpError | None:
    """An ICMP error message (without the outer IP header), or None for anything else."""
    if len(data) < 8:
        return None
    kind, code = data[0], data[1]
    mtu = None
    if version == 4:
        if kind not in (ICMP_TIME_EXCEEDED, ICMP_UNREACHABLE):
            return None
        words, unit, expired = data[5], 4, kind == ICMP_TIME_EXCEEDED
        if kind == ICMP_UNREACHABLE and code == 4:
            mtu, words = struct.unpack_from("!H", data, 6)[0], 0
    else:
        if kind not in (ICMP6_TIME_EXCEEDED, ICMP6_UNREACHABLE, ICMP6_TOO_BIG):
            return None
        words, unit, expired = data[4], 8, kind == ICMP6_TIME_EXCEEDED
        if kind == ICMP6_TOO_BIG:
            mtu, words = struct.unpack_from("!I", data, 4)[0], 0
    body = bytes(data[8:])
    if words:  # RFC 4884: the original datagram is `words` long, extensions follow
        cut = words * unit
        return IcmpError(router, expired, kind, code, body[:cut], len(body) > cut, mtu)
    return IcmpError(router, expired, kind, code, body, False, mtu)


def strip_ipv4_header(data: bytes) -> bytes:
    """What a raw IPv4 socket reads, without the outer IP header."""
    return data[(data[0] & 0x0F) * 4 :] if data else b""


@dataclass(frozen=True)
class View:
    """An IP/TCP packet, possibly cut short: every accessor returns None when not quoted."""

    raw: bytes

    @property
    def version(self) -> int | None:
        return self.raw[0] >> 4 if self.raw else None

    @property
    def ip_len(self) -> int | None:
        if self.version == 4 and len(self.raw) >= 20:
            ihl = (self.raw[0] & 0x0F) * 4
            return ihl if len(self.raw) >= ihl >= 20 else None
        if self.version == 6 and len(self.raw) >= 40:
            return 40  # the probes send no extension headers
        return None

    @property
    def protocol(self) -> int | None:
        if self.ip_len is None:
            return None
        return self.raw[9] if self.version == 4 else self.raw[6]

    def ip_fields(self) -> dict[str, object]:
        """IP header fields but TTL / hop limit and the header checksum (routers change those)."""
        if self.ip_len is None:
            return {}
        r = self.raw
        if self.version == 4:
            total, ident, frag = struct.unpack_from("!HHH", r, 2)
            return {
                "ip.tos": r[1], "ip.length": total, "ip.id": ident,
                "ip.flags": frag >> 13, "ip.fragment_offset": frag & 0x1FFF,
                "ip.protocol": r[9], "ip.options": r[20 : self.ip_len].hex(),
                "src": socket.inet_ntop(socket.AF_INET, r[12:16]),
                "dst": socket.inet_ntop(socket.AF_INET, r[16:20]),
            }  # fmt: skip
        first, plen, nxt = struct.unpack_from("!IHB", r, 0)
        return {
            "ip.traffic_class": (first >> 20) & 0xFF, "ip.flow_label": first & 0xFFFFF,
            "ip.length": plen, "ip.protocol": nxt,
            "src": socket.inet_ntop(socket.AF_INET6, r[8:24]),
            "dst": socket.inet_ntop(socket.AF_INET6, r[24:40]),
        }  # fmt: skip

    @property
    def ip_id(self) -> int | None:
        fields = self.ip_fields()
        return fields.get("ip.id", fields.get("ip.flow_label"))  # type: ignore[return-value]

    @property
    def total_length(self) -> int | None:
        """The packet's length as its own IP header says."""
        if self.ip_len is None:
            return None
        if self.version == 4:
            return struct.unpack_from("!H", self.raw, 2)[0]
        return 40 + struct.unpack_from("!H", self.raw, 4)[0]

    @property
    def tcp(self) -> bytes:
        """The quoted TCP bytes (no more than the IP header says the packet holds)."""
        if self.ip_len is None or self.protocol != 6:
            return b""
        end = len(self.raw)
        if self.total_length is not None and self.total_length >= self.ip_len:
            end = min(end, self.total_length)
        return self.raw[self.ip_len : end]

    def _u(self, fmt: str, at: int) -> int | None:
        size = struct.calcsize(fmt)
        return struct.unpack_from(fmt, self.tcp, at)[0] if len(self.tcp) >= at + size else None

    @property
    def sport(self) -> int | None:
        return self._u("!H", 0)

    @property
    def dport(self) -> int | None:
        return self._u("!H", 2)

    @property
    def seq(self) -> int | None:
        return self._u("!I", 4)

    @property
    def ack(self) -> int | None:
        return self._u("!I", 8)

    @property
    def header_length(self) -> int | None:
        off = self._u("!B", 12)
        return None if off is None else (off >> 4) * 4

    def tcp_fields(self) -> dict[str, object]:
        """TCP header fields that the quote reaches (the checksum left out: it follows)."""
        out: dict[str, object] = {}
        for name, fmt, at in (
            ("tcp.seq", "!I", 4),
            ("tcp.ack", "!I", 8),
            ("tcp.window", "!H", 14),
            ("tcp.urgent", "!H", 18),
        ):
            value = self._u(fmt, at)
            if value is not None:
                out[name] = value
        if len(self.tcp) >= 14:
            out["tcp.offset"] = self.tcp[12] >> 4
            out["tcp.flags"] = ((self.tcp[12] & 0x0F) << 8) | self.tcp[13]
        return out

    @property
    def options(self) -> bytes | None:
        """The options field, or as much of it as was quoted (see ``options_complete``)."""
        hl = self.header_length
        if hl is None or hl < 20:
            return None
        if hl == 20:
            return b""
        return self.tcp[20:hl] if len(self.tcp) > 20 else None

    @property
    def options_complete(self) -> bool:
        hl = self.header_length
        return hl is not None and len(self.tcp) >= hl

    @property
    def payload(self) -> bytes | None:
        """The quoted payload; None when the quote stops inside the header."""
        if not self.options_complete:
            return None
        return self.tcp[self.header_length :]

    @property
    def payload_complete(self) -> bool:
        total = self.total_length
        return self.options_complete and total is not None and len(self.raw) >= total

    def tsval(self) -> int | None:
        """The TSval, when the quote reaches it."""
        raw = self.options
        if raw is None:
            return None
        for span in option_spans(raw, cut=True):
            if span.kind == 8 and span.end - span.start == 10:
                return struct.unpack_from("!I", raw, span.start + 2)[0]
        return None

    def quote_class(self) -> str:
        """How much of the packet the quote holds: one of QUOTE_CLASSES."""
        if self.ip_len is None:
            return "none"
        tcp = len(self.tcp)
        if tcp < 8:
            return "IP header only"
        if tcp == 8:
            return "8 bytes"
        return "full" if self.payload_complete else "partial"


# --- a NAT that forwards ICMP errors without translating their quote ------------------------

Endpoint = tuple[str, int]


def error_quote(packet: bytes) -> View | None:
    """The packet quoted by a whole IPv4/IPv6 ICMP error packet (outer header included)."""
    if not packet:
        return None
    version = packet[0] >> 4
    if version == 4 and len(packet) >= 20:
        return View(packet[(packet[0] & 0x0F) * 4 + 8 :])
    if version == 6 and len(packet) >= 48:
        return View(packet[48:])
    return None


def quoted_source(packet: bytes) -> Endpoint | None:
    """The source address and port of the TCP packet an ICMP error packet quotes."""
    view = error_quote(packet)
    if view is None or view.protocol != 6 or view.sport is None:
        return None
    return str(view.ip_fields()["src"]), view.sport


def retarget(packet: bytes, lookup: Callable[[Endpoint], Endpoint | None]) -> bytes | None:
    """The ICMP error addressed to the inside host whose translated source it quotes, or None
    when the quote is not of a translated connection.

    RFC 5508 (REQ-4) asks a NAT to translate the quoted packet back too, and Linux does; some
    NATs only readdress the outer header, so that hosts behind them (and tracebox-style
    probes) see their packets as the outside saw them. This does that much.
    """
    source = quoted_source(packet)
    inside = lookup(source) if source else None
    if inside is None:
        return None
    out = bytearray(packet)
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
