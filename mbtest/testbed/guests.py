"""Topology nodes whose endpoint is a guest on another kernel: what the guest runs to become
that node (its addresses, routes, sysctls, MPTCP limits and endpoints, then a listener),
written as a shell script for the guest's init, run in the host's root (read-only)."""

from __future__ import annotations

import ipaddress
import shlex
import sys

from mbtest.testbed.topology import Node, Topology

READY = "ready"  # the file the guest writes in its exchange folder once it serves


def setup_script(
    topo: Topology,
    node: Node,
    sysctls: dict[str, str],
    ip_version: int,
    listen_port: int | None,
    root: str,
) -> str:
    """The guest's commands: its NICs (eth0, eth1... in the order of the node's links)
    configured as the topology says, then an MPTCP listener on ``listen_port`` (IPv4 and
    IPv6), or nothing but staying up; the READY file once it serves."""
    lines = ["set -e", "ip link set lo up"]
    for i, end in enumerate(topo.interfaces(node.name)):
        lines.append(f"ip link set eth{i} up")
        for cidr in end.addresses:
            nodad = " nodad" if ipaddress.ip_interface(cidr).version == 6 else ""
            lines.append(f"ip addr add {cidr} dev eth{i}{nodad}")
    for key, value in sysctls.items():
        lines.append(f"sysctl -qw {shlex.quote(f'{key}={value}')}")
    for route in node.routes:
        family = "-6 " if ipaddress.ip_address(route.via).version == 6 else ""
        hops = " ".join(f"nexthop via {g}" for g in (route.via, *route.also))
        via = hops if route.also else f"via {route.via}"
        table = f" table {route.table}" if route.table else ""
        lines.append(f"ip {family}route add {route.to} {via}{table}")
    for rule in node.rules:
        family = "-6 " if ipaddress.ip_network(rule.source, strict=False).version == 6 else ""
        lines.append(f"ip {family}rule add from {rule.source} table {rule.table}")
    if node.limits:
        subflows = node.limits.get("subflows", 2)
        accepted = node.limits.get("add_addr_accepted", 0)
        lines.append(f"ip mptcp limits set subflows {subflows} add_addr_accepted {accepted}")
    for endpoint in node.endpoints:
        if endpoint.version != ip_version:
            continue
        extra = f" id {endpoint.id}" if endpoint.id else ""
        extra += f" port {endpoint.port}" if endpoint.port else ""
        lines.append(f"ip mptcp endpoint add {endpoint.address}{extra} {' '.join(endpoint.flags)}")
    ready = f"/run/mbtest-guest/{READY}"
    if listen_port is None:
        lines += [f"echo {READY} > {ready}", "exec sleep 2147483647"]
    else:
        code = (
            "import pathlib; from mbtest.endpoints import listener; "
            f"s = listener.open_listeners({listen_port}); "
            f"pathlib.Path({ready!r}).write_text({READY!r}); listener.serve(s)"
        )
        lines += [
            f"cd {shlex.quote(root)}",
            f"exec {shlex.quote(sys.executable)} -c {shlex.quote(code)}",
        ]
    return "\n".join(lines) + "\n"
