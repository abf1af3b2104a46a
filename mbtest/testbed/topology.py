"""Topology files (TOML): nodes, links, addresses, routes, sysctls, MPTCP limits and endpoints.

Pure: loading and validation read a file and return dataclasses, or raise TopologyError with
one sentence per problem. A ``[chain]`` table is a shorthand for a line of routers with a
middlebox slot at a given hop (the long path probes need); its parameters can be overridden.
"""

from __future__ import annotations

import ipaddress
import re
import tomllib
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbtest.errors import MbtestError
from mbtest.host import datafiles
from mbtest.middlebox.spec import MiddleboxSpec

# backend: another server behind a slot; target: a host a campaign probes (many per topology)
ROLES = ("client", "server", "router", "slot", "backend", "target")
LISTEN = ("mptcp", "tcp", "closed", "silent")  # a target: MPTCP, plain TCP, RST, no answer
ENDPOINT_FLAGS = ("signal", "subflow", "backup", "fullmesh")
NODE_NAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
GUEST_ROLES = ("client", "server", "backend")  # the endpoints a VM can hold
KERNEL = re.compile(r"^(host|[0-9]+\.[0-9]+[0-9A-Za-z.+~\-]{0,60})$")  # (as kernels.find takes)
IFNAME = re.compile(r"^[a-z][a-z0-9]{0,9}$")
TOPOLOGY_DIR = datafiles.shipped("topologies")


class TopologyError(MbtestError):
    """A topology file that cannot be built as written."""


@dataclass(frozen=True)
class Endpoint:
    address: str
    id: int | None = None
    flags: tuple[str, ...] = ("subflow",)
    port: int | None = None

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.address).version


@dataclass(frozen=True)
class Route:
    to: str  # a prefix or "default"
    via: str
    table: int | None = None
    also: tuple[str, ...] = ()  # more gateways: equal-cost multipath (ECMP), per flow

    @property
    def version(self) -> int:
        return ipaddress.ip_address(self.via).version


@dataclass(frozen=True)
class Rule:
    source: str  # a prefix or address
    table: int


@dataclass
class Node:
    name: str
    role: str
    sysctls: dict[str, str] = field(default_factory=dict)
    routes: list[Route] = field(default_factory=list)
    rules: list[Rule] = field(default_factory=list)
    limits: dict[str, int] = field(default_factory=dict)  # subflows, add_addr_accepted
    endpoints: list[Endpoint] = field(default_factory=list)
    middlebox: str | None = None  # a slot's default behaviour spec
    icmp_errors: bool = True  # False: a router that never sends ICMP errors (a silent hop)
    listen: str | None = None  # a target: what answers on its port (LISTEN)
    port: int | None = None  # a target: the port it listens on
    kernel: str | None = None  # an endpoint in a VM of this cached kernel (None: the host's)

    @property
    def forwards(self) -> bool:
        return self.role in ("router", "slot")


@dataclass(frozen=True)
class LinkEnd:
    node: str
    ifname: str
    addresses: tuple[str, ...]  # interfaces, e.g. "10.0.1.1/24"


@dataclass(frozen=True)
class Link:
    a: LinkEnd
    b: LinkEnd
    mtu: int | None = None

    @property
    def ends(self) -> tuple[LinkEnd, LinkEnd]:
        return (self.a, self.b)


@dataclass
class Topology:
    name: str
    description: str
    nodes: dict[str, Node]
    links: list[Link]
    params: dict[str, Any] = field(default_factory=dict)
    truth: dict[str, Any] | None = None  # a generated topology's ground truth, per target
    _interfaces: dict[str, list[LinkEnd]] | None = field(default=None, repr=False, compare=False)
    _indexed: int = field(default=0, repr=False, compare=False)
    _neighbours: dict[str, list[str]] | None = field(default=None, repr=False, compare=False)
    _adjacent: int = field(default=0, repr=False, compare=False)

    def node_of_role(self, role: str) -> Node:
        node = next((n for n in self.nodes.values() if n.role == role), None)
        if node is None:
            why = " (its targets are for campaigns: mbtest probe --targets)" if self.targets else ""
            raise TopologyError(f"topology {self.name} has no {role}{why}")
        return node

    @property
    def client(self) -> Node:
        return self.node_of_role("client")

    @property
    def server(self) -> Node:
        return self.node_of_role("server")

    @property
    def targets(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == "target"]

    @property
    def backends(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == "backend"]

    @property
    def slots(self) -> list[Node]:
        return [n for n in self.nodes.values() if n.role == "slot"]

    def interfaces(self, node: str) -> list[LinkEnd]:
        """The node's link ends, in link order (indexed once: topologies of thousands of
        nodes ask for every node's)."""
        if self._interfaces is None or self._indexed != len(self.links):
            index: dict[str, list[LinkEnd]] = {}
            for link in self.links:
                for end in link.ends:
                    index.setdefault(end.node, []).append(end)
            self._interfaces, self._indexed = index, len(self.links)
        return list(self._interfaces.get(node, []))

    def addresses(self, node: str, version: int | None = None) -> list[str]:
        """The node's addresses (without prefix length), in link order."""
        out = []
        for end in self.interfaces(node):
            for cidr in end.addresses:
                iface = ipaddress.ip_interface(cidr)
                if version is None or iface.version == version:
                    out.append(str(iface.ip))
        return out

    def hops_from(self, src: str) -> dict[str, str | None]:
        """Every node reachable from src, with the one before it on a shortest path."""
        previous: dict[str, str | None] = {src: None}
        queue = deque([src])
        neighbours = self._adjacency()
        while queue:
            here = queue.popleft()
            for nxt in neighbours.get(here, []):
                if nxt not in previous:
                    previous[nxt] = here
                    queue.append(nxt)
        return previous

    def hops_to(self, src: str, dst: str) -> list[str]:
        """The nodes of a shortest path from src to dst (both included)."""
        previous = self.hops_from(src)
        path, at = [], dst
        while at is not None:
            path.append(at)
            at = previous.get(at)
        return path[::-1] if path[-1] == src else []

    def _adjacency(self) -> dict[str, list[str]]:
        if self._neighbours is None or self._adjacent != len(self.links):
            out: dict[str, list[str]] = {}
            for link in self.links:
                out.setdefault(link.a.node, []).append(link.b.node)
                out.setdefault(link.b.node, []).append(link.a.node)
            self._neighbours, self._adjacent = out, len(self.links)
        return self._neighbours

    def _reach(self, start: str, avoid: str, adjacency: dict[str, list[str]]) -> set[str]:
        """Every node reachable from start without passing through ``avoid``."""
        seen, queue = {start, avoid}, deque([start])
        while queue:
            for nxt in adjacency.get(queue.popleft(), []):
                if nxt not in seen:
                    seen.add(nxt)
                    queue.append(nxt)
        return seen - {avoid}

    def far_ends(self) -> list[str]:
        """What the client talks to: the server, or the targets of a campaign topology."""
        return [n.name for n in self.nodes.values() if n.role in ("server", "target")]

    def slot_on_path(self, slot: str) -> bool:
        """True when some path from the client to the server (or a target) goes through
        the slot."""
        adjacency = self._adjacency()
        near = adjacency.get(slot, [])
        client_side = self._reach(self.client.name, slot, adjacency)
        ends = set(self.far_ends())
        toward_client = [a for a in near if a in client_side]
        if not toward_client:
            return False
        if len(toward_client) >= 2 and ends & client_side:
            return True  # (a loop through the slot: it is on a path)
        return any(self._reach(b, slot, adjacency) & ends for b in near if b not in client_side)


def find(name_or_path: str) -> Path:
    """A topology by name (topologies/NAME.toml) or by path."""
    return datafiles.find(name_or_path, TOPOLOGY_DIR, ".toml", "topology", TopologyError)


def available() -> list[str]:
    return datafiles.available(TOPOLOGY_DIR, ".toml")


def load(name_or_path: str, params: dict[str, Any] | None = None) -> Topology:
    path = find(name_or_path)
    try:
        data = tomllib.loads(path.read_text())
    except tomllib.TOMLDecodeError as e:
        raise TopologyError(f"{path.name} is not valid TOML: {e}") from None
    except UnicodeDecodeError:
        raise TopologyError(f"{path} is not a text file") from None
    except OSError as e:
        raise TopologyError(f"{path} cannot be read: {e.strerror}") from None
    return parse(data, source=path.name, params=params)


def parse(
    data: dict[str, Any], source: str = "topology", params: dict[str, Any] | None = None
) -> Topology:
    """Build and validate a Topology from TOML data."""
    where = source
    known = {"name", "description", "nodes", "links", "chain", "internet", "params"}
    _no_unknown(data, known, where)
    chosen = dict(_table(data, "params", where))
    for key, value in (params or {}).items():
        if key not in chosen:
            allowed = ", ".join(sorted(chosen)) or "none"
            raise TopologyError(f"{where}: unknown parameter {key!r} (parameters: {allowed})")
        chosen[key] = _param_value(key, chosen[key], value, where)
    truth = None
    if "chain" in data:
        data = {**data, **_expand_chain(data["chain"], chosen, where)}
    if "internet" in data:
        from mbtest.testbed import internet

        made = internet.expand(_resolved(data["internet"], chosen, where), where)
        data, truth = {**data, "nodes": made.nodes, "links": made.links}, made.truth
    name = _text(data.get("name") or Path(source).stem, f"{where}: name")
    _text(data.get("description", ""), f"{where}: description")
    nodes: dict[str, Node] = {}
    for raw in _table_list(data, "nodes", where):
        node = _parse_node(raw, where)
        if node.name in nodes:
            raise TopologyError(f"{where}: node {node.name!r} is defined twice")
        nodes[node.name] = node
    links = [
        _parse_link(raw, where, i) for i, raw in enumerate(_table_list(data, "links", where), 1)
    ]
    topo = Topology(name, data.get("description", ""), nodes, links, chosen, truth)
    validate(topo, where)
    return topo


def _resolved(table: Any, params: dict[str, Any], where: str) -> dict[str, Any]:
    """A generator's table with its ``"$param"`` values replaced by the parameters'."""
    if not isinstance(table, dict):
        raise TopologyError(f"{where}: internet must be a table")
    out = {}
    for key, raw in table.items():
        if isinstance(raw, str) and raw.startswith("$"):
            if raw[1:] not in params:
                raise TopologyError(f"{where}: {key} names unknown parameter {raw}")
            raw = params[raw[1:]]
        out[key] = raw
    return out


def _param_value(key: str, default: Any, value: Any, where: str) -> Any:
    """A --param value in the type of the parameter's default."""
    if isinstance(default, bool):
        if str(value).lower() not in ("true", "false", "1", "0"):
            raise TopologyError(f"{where}: parameter {key} must be true or false, not {value!r}")
        return str(value).lower() in ("true", "1")
    if isinstance(default, int):
        try:
            return int(str(value), 0)
        except ValueError:
            raise TopologyError(
                f"{where}: parameter {key} must be an integer, not {value!r}"
            ) from None
    return str(value)


def _no_unknown(table: dict[str, Any], known: set[str], where: str) -> None:
    if not isinstance(table, dict):
        raise TopologyError(f"{where} must be a table")
    extra = sorted(set(table) - known)
    if extra:
        raise TopologyError(
            f"{where}: unknown key {extra[0]!r} (expected one of {', '.join(sorted(known))})"
        )


def _table_list(data: dict[str, Any], key: str, where: str) -> list[dict[str, Any]]:
    value = data.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise TopologyError(f"{where}: {key} must be an array of tables ([[{key}]])")
    return value


def _table(raw: dict[str, Any], key: str, where: str) -> dict[str, Any]:
    value = raw.get(key, {})
    if not isinstance(value, dict):
        raise TopologyError(f"{where}: {key} must be a table of key = value")
    return value


def _integer(value: Any, low: int, high: int, what: str) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
        raise TopologyError(f"{what} must be an integer from {low} to {high}, not {value!r}")
    return value


def _text(value: Any, what: str) -> str:
    if not isinstance(value, str):
        raise TopologyError(f"{what} must be a string, not {value!r}")
    return value


def _parse_node(raw: dict[str, Any], where: str) -> Node:
    known = {
        "name",
        "role",
        "sysctls",
        "routes",
        "rules",
        "limits",
        "endpoints",
        "middlebox",
        "icmp_errors",
        "listen",
        "port",
        "kernel",
    }
    _no_unknown(raw, known, where)
    name = raw.get("name")
    if not isinstance(name, str) or not NODE_NAME.fullmatch(name):
        raise TopologyError(f"{where}: node name {name!r} must be 1-10 lowercase letters or digits")
    here = f"{where}: node {name}"
    role = raw.get("role")
    if role not in ROLES:
        raise TopologyError(f"{here}: role must be one of {', '.join(ROLES)}, not {role!r}")
    sysctls = _table(raw, "sysctls", here)
    for key, value in sysctls.items():
        if not re.fullmatch(r"net\.[a-z0-9_.\-]+", key):
            raise TopologyError(f"{here}: sysctl {key!r} is not a net.* sysctl")
        if not isinstance(value, (str, int)) or not re.fullmatch(
            r"[0-9A-Za-z_.:\- ]{1,64}", str(value)
        ):
            raise TopologyError(f"{here}: sysctl {key} = {value!r} is not a plain value")
    routes = []
    for r in _table_list(raw, "routes", here):
        _no_unknown(r, {"to", "via", "table"}, f"{here}: route")
        if "to" not in r or "via" not in r:
            raise TopologyError(f"{here}: a route needs 'to' and 'via'")
        _check_prefix(_text(r["to"], f"{here}: route to"), f"{here}: route", allow_default=True)
        gateways = r["via"] if isinstance(r["via"], list) else [r["via"]]
        if not gateways or len(gateways) > 16:
            raise TopologyError(f"{here}: a route's via is an address or a list of 1-16")
        for gateway in gateways:
            _check_address(_text(gateway, f"{here}: route via"), f"{here}: route via")
        if len({ipaddress.ip_address(g).version for g in gateways}) > 1:
            raise TopologyError(f"{here}: a route's gateways mix IPv4 and IPv6")
        table = r.get("table")
        if table is not None:
            _integer(table, 1, 252, f"{here}: route table")
        routes.append(Route(r["to"], gateways[0], table, tuple(gateways[1:])))
    rules = []
    for r in _table_list(raw, "rules", here):
        _no_unknown(r, {"from", "table"}, f"{here}: rule")
        _check_prefix(_text(r.get("from", ""), f"{here}: rule from"), f"{here}: rule")
        if (
            not isinstance(r.get("table"), int)
            or isinstance(r["table"], bool)
            or not (1 <= r["table"] < 253)
        ):
            raise TopologyError(f"{here}: a rule needs a table number between 1 and 252")
        rules.append(Rule(r["from"], r["table"]))
    limits = _table(raw, "limits", here)
    _no_unknown(limits, {"subflows", "add_addr_accepted"}, f"{here}: limits")
    for key, value in limits.items():
        _integer(value, 0, 8, f"{here}: limit {key}")
    endpoints = []
    for e in _table_list(raw, "endpoints", here):
        _no_unknown(e, {"address", "id", "flags", "port"}, f"{here}: endpoint")
        _check_address(
            _text(e.get("address", ""), f"{here}: endpoint address"), f"{here}: endpoint"
        )
        flags = e.get("flags", ["subflow"])
        if not isinstance(flags, list) or not all(isinstance(f, str) for f in flags):
            raise TopologyError(f"{here}: endpoint flags must be a list of names")
        bad = [f for f in flags if f not in ENDPOINT_FLAGS]
        if bad:
            raise TopologyError(
                f"{here}: endpoint flag {bad[0]!r} is not one of {', '.join(ENDPOINT_FLAGS)}"
            )
        if e.get("id") is not None:
            _integer(e["id"], 1, 255, f"{here}: endpoint id")
        if e.get("port") is not None:
            _integer(e["port"], 1, 65535, f"{here}: endpoint port")
        endpoints.append(Endpoint(e["address"], e.get("id"), tuple(flags), e.get("port")))
    if (endpoints or limits) and role not in ("client", "server"):
        raise TopologyError(
            f"{here}: only the client and the server have MPTCP endpoints and limits"
        )
    icmp_errors = raw.get("icmp_errors", True)
    if not isinstance(icmp_errors, bool):
        raise TopologyError(f"{here}: icmp_errors must be true or false")
    if not icmp_errors and role not in ("router", "slot"):
        raise TopologyError(f"{here}: only routers and slots can be silent (icmp_errors)")
    middlebox = raw.get("middlebox")
    if middlebox is not None:
        if role != "slot":
            raise TopologyError(f"{here}: only a slot holds a middlebox")
        try:
            MiddleboxSpec.parse(_text(middlebox, f"{here}: middlebox"))
        except MbtestError as e:
            raise TopologyError(f"{here}: {e}") from None
    listen, port = raw.get("listen"), raw.get("port")
    if (listen is not None or port is not None) and role != "target":
        raise TopologyError(f"{here}: only a target has listen and port")
    if role == "target":
        listen = "mptcp" if listen is None else listen
        if listen not in LISTEN:
            raise TopologyError(f"{here}: listen must be one of {', '.join(LISTEN)}")
        port = _integer(80 if port is None else port, 1, 65535, f"{here}: port")
    kernel = raw.get("kernel")
    if kernel is not None:
        if role not in GUEST_ROLES:
            raise TopologyError(f"{here}: only the client, the server and backends run in a VM")
        if not isinstance(kernel, str) or not KERNEL.fullmatch(kernel):
            raise TopologyError(f"{here}: kernel must be a version such as 6.1 or 'host'")
        kernel = None if kernel == "host" else kernel
    sysctls = {k: str(v) for k, v in sysctls.items()}
    return Node(
        name, role, sysctls, routes, rules, limits, endpoints, middlebox, icmp_errors, listen,
        port, kernel,
    )  # fmt: skip


def _parse_link(raw: dict[str, Any], where: str, number: int) -> Link:
    here = f"{where}: link {number}"
    _no_unknown(raw, {"a", "b", "mtu"}, here)
    mtu = raw.get("mtu")
    if mtu is not None and (not isinstance(mtu, int) or not 1280 <= mtu <= 65535):
        raise TopologyError(f"{here}: mtu must be an integer from 1280 to 65535")
    ends = []
    for side in ("a", "b"):
        end = raw.get(side)
        if not isinstance(end, dict):
            raise TopologyError(
                f"{here}: needs end {side} = {{ node = ..., ifname = ..., addresses = [...] }}"
            )
        _no_unknown(end, {"node", "ifname", "addresses"}, f"{here} end {side}")
        ifname = end.get("ifname", "")
        if not isinstance(ifname, str) or not IFNAME.fullmatch(ifname):
            raise TopologyError(
                f"{here}: interface name {ifname!r} must be 1-10 lowercase letters or digits"
            )
        addresses = end.get("addresses", [])
        if not isinstance(addresses, list) or not all(isinstance(a, str) for a in addresses):
            raise TopologyError(f"{here}: addresses must be a list of strings")
        addresses = tuple(addresses)
        for cidr in addresses:
            _check_prefix(cidr, f"{here}", interface=True)
        node = end.get("node")
        if not isinstance(node, str):
            raise TopologyError(f"{here}: end {side} needs node = NAME")
        ends.append(LinkEnd(node, ifname, addresses))
    return Link(ends[0], ends[1], mtu)


def _check_address(text: str, where: str) -> None:
    try:
        if "%" in text:  # (a scope id: nothing a testbed uses, and text a shell would read)
            raise ValueError
        ipaddress.ip_address(text)
    except ValueError:
        raise TopologyError(f"{where}: {text!r} is not an IP address") from None


def _check_prefix(
    text: str, where: str, allow_default: bool = False, interface: bool = False
) -> None:
    if allow_default and text == "default":
        return
    try:
        if "%" in text:
            raise ValueError
        if interface:
            if "/" not in text:
                raise ValueError
            ipaddress.ip_interface(text)
        else:
            ipaddress.ip_network(text, strict=False)
    except ValueError:
        what = "an address with a prefix length" if interface else "a prefix"
        raise TopologyError(f"{where}: {text!r} is not {what}") from None


def validate(topo: Topology, where: str) -> None:
    """Whole-topology checks: one clear sentence for the first problem found."""
    roles = [n.role for n in topo.nodes.values()]
    if roles.count("client") != 1:
        found = roles.count("client")
        raise TopologyError(f"{where}: needs exactly one client node, found {found}")
    servers = roles.count("server")
    if servers > 1 or (servers == 0 and "target" not in roles):
        raise TopologyError(f"{where}: needs exactly one server node (or targets), found {servers}")
    seen_if: set[tuple[str, str]] = set()
    seen_addr: dict[str, str] = {}
    for number, link in enumerate(topo.links, 1):
        if link.a.node == link.b.node:
            raise TopologyError(f"{where}: link {number} connects {link.a.node} to itself")
        for end in link.ends:
            if end.node not in topo.nodes:
                raise TopologyError(f"{where}: link {number} names unknown node {end.node!r}")
            if (end.node, end.ifname) in seen_if:
                raise TopologyError(f"{where}: interface {end.node}:{end.ifname} is used twice")
            seen_if.add((end.node, end.ifname))
            for cidr in end.addresses:
                ip = str(ipaddress.ip_interface(cidr).ip)
                if ip in seen_addr:
                    raise TopologyError(
                        f"{where}: address {ip} is on both {seen_addr[ip]} and {end.node}"
                    )
                seen_addr[ip] = end.node
        for version in (4, 6):
            nets = {
                str(ipaddress.ip_interface(c).network)
                for end in link.ends
                for c in end.addresses
                if ipaddress.ip_interface(c).version == version
            }
            if len(nets) > 1:
                raise TopologyError(
                    f"{where}: the ends of link {number} are in different IPv{version} subnets"
                )
    on_link = _link_neighbours(topo)
    for node in topo.nodes.values():
        if not topo.interfaces(node.name):
            raise TopologyError(f"{where}: node {node.name} has no link")
        own = set(topo.addresses(node.name))
        for endpoint in node.endpoints:
            if endpoint.address not in own:
                raise TopologyError(
                    f"{where}: node {node.name} has an endpoint on {endpoint.address}, "
                    "not one of its addresses"
                )
        for route in node.routes:
            for gateway in (route.via, *route.also):
                if ipaddress.ip_address(gateway) not in on_link.get(node.name, set()):
                    raise TopologyError(
                        f"{where}: node {node.name} routes via {gateway}, "
                        "which is not on any of its links"
                    )
        tables = {r.table for r in node.routes if r.table}
        for rule in node.rules:
            if rule.table not in tables:
                raise TopologyError(
                    f"{where}: node {node.name} has a rule to table {rule.table}, "
                    "which has no route"
                )
    for slot in topo.slots:
        if len(topo.interfaces(slot.name)) < 2 or not topo.slot_on_path(slot.name):
            raise TopologyError(
                f"{where}: middlebox slot {slot.name} is not on a path between client and server"
            )
    reached = set(topo.hops_from(topo.client.name))
    for end in topo.far_ends():
        if end not in reached:
            raise TopologyError(f"{where}: {end} cannot be reached from the client")


def _link_neighbours(topo: Topology) -> dict[str, set]:
    """node -> the addresses of the other ends of its links (where a route can point)."""
    out: dict[str, set] = {}
    for link in topo.links:
        for here, there in ((link.a, link.b), (link.b, link.a)):
            known = out.setdefault(here.node, set())
            known.update(ipaddress.ip_interface(c).ip for c in there.addresses)
    return out


def _expand_chain(chain: dict[str, Any], params: dict[str, Any], where: str) -> dict[str, Any]:
    """client - r1 - ... - rN - server, the router at hop ``slot_at`` being a middlebox slot."""
    _no_unknown(chain, {"routers", "slot_at", "silent_at"}, f"{where}: chain")

    def value(key: str, default: int | None = None) -> int:
        raw = chain.get(key, default)
        if isinstance(raw, str) and raw.startswith("$"):
            raw = params.get(raw[1:])
        if not isinstance(raw, int):
            raise TopologyError(f"{where}: chain {key} must be an integer")
        return raw

    routers, slot_at, silent_at = value("routers"), value("slot_at"), value("silent_at", 0)
    if not 1 <= routers <= 30:
        raise TopologyError(f"{where}: chain routers must be between 1 and 30, not {routers}")
    if not 1 <= slot_at <= routers:
        raise TopologyError(
            f"{where}: slot_at must be a hop between 1 and {routers}, not {slot_at}"
        )
    if not 0 <= silent_at <= routers or (silent_at and silent_at == slot_at):
        raise TopologyError(
            f"{where}: silent_at must be 0 (none) or a router hop from 1 to {routers} other "
            f"than the slot's, not {silent_at}"
        )
    names = (
        ["client"]
        + [("slot" if i == slot_at else "r") + str(i) for i in range(1, routers + 1)]
        + ["server"]
    )
    nodes = [
        {
            "name": "client",
            "role": "client",
            "routes": [
                {"to": "default", "via": "10.200.0.2"},
                {"to": "default", "via": "fd00:200::2"},
            ],
        }
    ]
    links = []
    for i in range(len(names) - 1):
        links.append(
            {
                "a": {
                    "node": names[i],
                    "ifname": "eth1" if i else "eth0",
                    "addresses": [f"10.200.{i}.1/24", f"fd00:200:{i:x}::1/64"],
                },
                "b": {
                    "node": names[i + 1],
                    "ifname": "eth0",
                    "addresses": [f"10.200.{i}.2/24", f"fd00:200:{i:x}::2/64"],
                },
            }
        )
    last = len(names) - 2
    for i, name in enumerate(names[1:-1], start=1):
        routes = []
        for j in range(i + 1, last + 1):  # the subnets beyond: toward the server
            routes.append({"to": f"10.200.{j}.0/24", "via": f"10.200.{i}.2"})
            routes.append({"to": f"fd00:200:{j:x}::/64", "via": f"fd00:200:{i:x}::2"})
        routes.append({"to": "default", "via": f"10.200.{i - 1}.1"})  # the rest: toward the client
        routes.append({"to": "default", "via": f"fd00:200:{i - 1:x}::1"})
        role = "slot" if name.startswith("slot") else "router"
        node = {"name": name, "role": role, "routes": routes}
        if i == silent_at:
            node["icmp_errors"] = False
        nodes.append(node)
    nodes.append(
        {
            "name": "server",
            "role": "server",
            "routes": [
                {"to": "default", "via": f"10.200.{last}.1"},
                {"to": "default", "via": f"fd00:200:{last:x}::1"},
            ],
        }
    )
    return {"nodes": nodes, "links": links}
