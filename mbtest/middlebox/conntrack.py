"""What the kernel's connection tracker knows: the NAT's ground truth (which inside address
and port each translated connection stands for)."""

from __future__ import annotations

import select
import socket
import struct
import threading
from collections.abc import Iterator
from typing import Any


def warm() -> None:
    """Import the netlink conntrack client before the first packet needs it: the import takes
    about half a second, which would delay the first ICMP error a NAT readdresses past the
    probe's patience."""
    from pyroute2 import Conntrack  # noqa: F401


def tracked_tcp() -> Iterator[tuple[Any, Any]]:
    """(original, reply) tuples of every tracked TCP connection, IPv4 and IPv6."""
    from pyroute2 import Conntrack

    for family in (socket.AF_INET, socket.AF_INET6):
        with Conntrack(nfgen_family=family) as ct:
            for entry in ct.dump_entries():
                if entry.tuple_orig.proto == socket.IPPROTO_TCP:
                    yield entry.tuple_orig, entry.tuple_reply


def endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


def inside_endpoint(outside: tuple[str, int]) -> tuple[str, int] | None:
    """Which inside host and port a translated source address and port stand for."""
    for orig, reply in tracked_tcp():
        if (reply.daddr, reply.dport) == outside:
            return orig.saddr, orig.sport
    return None


def rewrites() -> list[dict[str, Any]]:
    """A log entry per tracked connection whose reply tuple shows a source rewrite."""
    out = []
    for orig, reply in tracked_tcp():
        entry = rewrite_entry(
            (orig.saddr, orig.sport, orig.daddr, orig.dport, socket.IPPROTO_TCP),
            (reply.saddr, reply.sport, reply.daddr, reply.dport, socket.IPPROTO_TCP),
        )
        if entry is not None:
            out.append(entry)
    return out


# --- events: every new connection as the kernel tracks it, even one that closes early ------

NETLINK_NETFILTER = 12
GROUP_NEW = 1  # NFNLGRP_CONNTRACK_NEW as a bind mask
CTA_TUPLE_ORIG, CTA_TUPLE_REPLY = 1, 2
CTA_TUPLE_IP, CTA_TUPLE_PROTO = 1, 2
CTA_IP_V4_SRC, CTA_IP_V4_DST, CTA_IP_V6_SRC, CTA_IP_V6_DST = 1, 2, 3, 4
CTA_PROTO_NUM, CTA_PROTO_SRC_PORT, CTA_PROTO_DST_PORT = 1, 2, 3


def _attributes(data: bytes) -> dict[int, bytes]:
    out, pos = {}, 0
    while pos + 4 <= len(data):
        length, kind = struct.unpack_from("=HH", data, pos)
        if length < 4 or pos + length > len(data):
            break
        out[kind & 0x3FFF] = data[pos + 4 : pos + length]
        pos += (length + 3) & ~3
    return out


def _tuple(data: bytes) -> tuple[str, int, str, int, int] | None:
    """(source, source port, destination, destination port, protocol) of a CTA_TUPLE."""
    nested = _attributes(data)
    ip, proto = (
        _attributes(nested.get(CTA_TUPLE_IP, b"")),
        _attributes(nested.get(CTA_TUPLE_PROTO, b"")),
    )
    if CTA_IP_V4_SRC in ip and CTA_IP_V4_DST in ip:
        src = socket.inet_ntop(socket.AF_INET, ip[CTA_IP_V4_SRC])
        dst = socket.inet_ntop(socket.AF_INET, ip[CTA_IP_V4_DST])
    elif CTA_IP_V6_SRC in ip and CTA_IP_V6_DST in ip:
        src = socket.inet_ntop(socket.AF_INET6, ip[CTA_IP_V6_SRC])
        dst = socket.inet_ntop(socket.AF_INET6, ip[CTA_IP_V6_DST])
    else:
        return None
    try:
        number = proto[CTA_PROTO_NUM][0]
        sport = struct.unpack("!H", proto[CTA_PROTO_SRC_PORT])[0]
        dport = struct.unpack("!H", proto[CTA_PROTO_DST_PORT])[0]
    except (KeyError, IndexError, struct.error):
        return None
    return src, sport, dst, dport, number


def rewrite_entry(orig: tuple, reply: tuple) -> dict[str, Any] | None:
    """The log entry of a connection whose reply tuple shows a source rewrite, or None."""
    before, after = endpoint(orig[0], orig[1]), endpoint(reply[2], reply[3])
    if before == after:
        return None
    return {
        "flow": f"{before} > {endpoint(orig[2], orig[3])}",
        "direction": "c>s",
        "field": "source",
        "before": before,
        "after": after,
    }


def parse_events(data: bytes) -> list[dict[str, Any]]:
    """The rewrite entries of the TCP connections a batch of conntrack messages announces."""
    out, pos = [], 0
    while pos + 20 <= len(data):
        length = struct.unpack_from("=I", data, pos)[0]
        if length < 20 or pos + length > len(data):
            break
        attrs = _attributes(data[pos + 20 : pos + length])
        pos += (length + 3) & ~3
        orig = _tuple(attrs.get(CTA_TUPLE_ORIG, b""))
        reply = _tuple(attrs.get(CTA_TUPLE_REPLY, b""))
        if orig and reply and orig[4] == socket.IPPROTO_TCP:
            entry = rewrite_entry(orig, reply)
            if entry is not None:
                out.append(entry)
    return out


class Events:
    """Listens to the conntrack NEW events of the namespace (nf_conntrack_events=1 there)
    and hands each TCP rewrite to a callback, once."""

    def __init__(self, callback):
        self.callback = callback
        self.seen: set[str] = set()
        self.lock = threading.Lock()
        self.sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_NETFILTER)
        self.sock.bind((0, GROUP_NEW))
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            try:
                ready, _, _ = select.select([self.sock], [], [], 0.2)
                if ready:
                    for entry in parse_events(self.sock.recv(1 << 16)):
                        self.add(entry)
            except (OSError, ValueError):  # closed by stop(), or a message cut short
                continue

    def add(self, entry: dict[str, Any]) -> None:
        with self.lock:
            if entry["flow"] in self.seen:
                return
            self.seen.add(entry["flow"])
        self.callback(entry)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        self.sock.close()
