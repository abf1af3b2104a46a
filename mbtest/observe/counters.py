"""MPTcpExt MIB counters (/proc/net/netstat as a namespace sees it) and their deltas."""

from __future__ import annotations

import itertools

from mbtest.host import netns


def parse_netstat(text: str, group: str = "MPTcpExt") -> dict[str, int]:
    """The counters of one group from the paired header/value lines of /proc/net/netstat."""
    lines = text.splitlines()
    for header, values in itertools.pairwise(lines):
        if header.startswith(group + ":") and values.startswith(group + ":"):
            names, numbers = header.split()[1:], values.split()[1:]
            return {n: int(v) for n, v in zip(names, numbers, strict=True)}
    return {}


def read(ns: str) -> dict[str, int]:
    return parse_netstat(netns.read_proc_net(ns, "netstat"))


def delta(before: dict[str, int], after: dict[str, int]) -> dict[str, int]:
    """Counters that changed, with how much."""
    return {k: v - before.get(k, 0) for k, v in after.items() if v != before.get(k, 0)}
