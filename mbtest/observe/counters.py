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


# Host counters that explain a stall: segments refused locally for being larger than the
# path MTU, retransmission timeouts, ICMP errors sent. (/proc/net/snmp and TcpExt.)
HOST = {
    "Ip": ("FragFails", "OutDiscards", "OutNoRoutes"),
    "Icmp": ("OutDestUnreachs", "InDestUnreachs"),
    "Tcp": ("RetransSegs", "OutRsts"),
    "TcpExt": ("TCPTimeouts", "TCPLossProbes", "TCPAbortOnTimeout"),
}


HOST6 = ("Ip6FragFails", "Ip6OutDiscards", "Icmp6OutPktTooBigs", "Icmp6OutDestUnreachs")


def read_host(ns: str) -> dict[str, int]:
    """The HOST counters of a namespace, named Group.Name (IPv6's as Ip6.Name...)."""
    out = {}
    text = netns.read_proc_net(ns, "snmp") + netns.read_proc_net(ns, "netstat")
    for group, names in HOST.items():
        values = parse_netstat(text, group)
        out.update({f"{group}.{name}": values[name] for name in names if name in values})
    for line in netns.read_proc_net(ns, "snmp6").splitlines():
        name, _, value = line.partition(" ")
        if name in HOST6 and value.strip().isdigit():
            group = "Ip6" if name.startswith("Ip6") else "Icmp6"
            out[f"{group}.{name[len(group) :]}"] = int(value)
    return out
