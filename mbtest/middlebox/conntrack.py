"""What the kernel's connection tracker knows: the NAT's ground truth (which inside address
and port each translated connection stands for)."""

from __future__ import annotations

import socket
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
        before = endpoint(orig.saddr, orig.sport)
        after = endpoint(reply.daddr, reply.dport)
        if before != after:
            out.append(
                {
                    "flow": f"{before} > {endpoint(orig.daddr, orig.dport)}",
                    "direction": "c>s",
                    "field": "source",
                    "before": before,
                    "after": after,
                }
            )
    return out
