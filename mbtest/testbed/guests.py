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
    nics: list[tuple[str, int | None]],
) -> str:
    """The guest's commands: its NICs (``nics``: hardware address and MTU per link of the
    node, in link order) named and configured as the topology says (every value written
    canonical and quoted: a topology file is input from outside), then an MPTCP listener
    on ``listen_port`` (IPv4 and IPv6), or nothing but staying up; the READY file once it
    serves."""
    q = shlex.quote
    lines = ["set -e", "ip link set lo up"]
    for (mac, mtu), end in zip(nics, topo.interfaces(node.name), strict=True):
        # the NIC found by its hardware address (the bus order is not the links' order),
        # renamed as the topology names it, its MTU the link's
        lines.append(f"dev=$(grep -il {q(mac)} /sys/class/net/*/address | cut -d/ -f5)")
        lines.append(f'ip link set "$dev" name {q(end.ifname)}')
        if mtu:
            lines.append(f"ip link set {q(end.ifname)} mtu {int(mtu)}")
        lines.append(f"ip link set {q(end.ifname)} up")
        for cidr in end.addresses:
            iface = ipaddress.ip_interface(cidr)
            nodad = " nodad" if iface.version == 6 else ""
            lines.append(f"ip addr add {q(str(iface))} dev {q(end.ifname)}{nodad}")
    for key, value in sysctls.items():
        lines.append(f"sysctl -qw {shlex.quote(f'{key}={value}')}")
    for route in node.routes:
        family = "-6 " if ipaddress.ip_address(route.via).version == 6 else ""
        gateways = [str(ipaddress.ip_address(g)) for g in (route.via, *route.also)]
        via = " ".join(f"nexthop via {g}" for g in gateways) if route.also else f"via {gateways[0]}"
        to = "default" if route.to == "default" else str(ipaddress.ip_network(route.to, False))
        table = f" table {int(route.table)}" if route.table else ""
        lines.append(f"ip {family}route add {to} {via}{table}")
    for rule in node.rules:
        source = ipaddress.ip_network(rule.source, strict=False)
        family = "-6 " if source.version == 6 else ""
        lines.append(f"ip {family}rule add from {source} table {int(rule.table)}")
    if node.limits:
        subflows = node.limits.get("subflows", 2)
        accepted = node.limits.get("add_addr_accepted", 0)
        lines.append(f"ip mptcp limits set subflows {subflows} add_addr_accepted {accepted}")
    for endpoint in node.endpoints:
        if endpoint.version != ip_version:
            continue
        extra = f" id {int(endpoint.id)}" if endpoint.id else ""
        extra += f" port {int(endpoint.port)}" if endpoint.port else ""
        flags = " ".join(q(f) for f in endpoint.flags)
        address = str(ipaddress.ip_address(endpoint.address))
        lines.append(f"ip mptcp endpoint add {address}{extra} {flags}")
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
