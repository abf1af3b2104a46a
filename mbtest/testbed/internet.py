"""An emulated Internet to validate campaigns against: many targets behind a shared core,
each reached through a region router shared with a few others and an access path of its own,
with what real paths have, chosen by seed: routers that quote only 8 bytes of the offending
datagram, routers that rate-limit their ICMP errors, per-flow ECMP over two parallel routers,
silent routers, targets that never answer, answer without MPTCP or reset, and middleboxes of
the catalog. Pure: it returns the topology's nodes and links and the ground truth of every
target's path (what each hop does, where), which ``topo up`` writes beside the testbed.

    client - core1 - core2 - region - access 1..L (a pair of routers for ECMP) - target
"""

from __future__ import annotations

import ipaddress
import random
from dataclasses import dataclass, field
from typing import Any

from mbtest.errors import MbtestError

# in-flight changes the probes can see, and what quotes must hold for it (catalog specs)
MIDDLEBOXES = (
    "strip-option:mode=nop",
    "strip-option:mode=remove",
    "kernel-optstrip",
    "mangle-option:field=MP_CAPABLE.checksum_required,value=true",
    "seq-rewrite",
    "mss-clamp:value=1200",
    "window-shrink",
    "payload-flip",
)
QUOTE_TRIM = "quote-trim:bytes=8"
DEFAULTS = {
    "targets": 100,
    "seed": 1,
    "port": 80,
    "per_region": 5,  # targets sharing one region router
    "max_access": 4,  # access routers per target: 1..max_access
    "quote8": 12,  # percent of region and access routers quoting 8 bytes only
    "ratelimit": 15,  # percent rate-limiting their ICMP errors
    "ratelimit_ms": 250,  # Linux's per-destination token bucket: one per this, bursts of 6
    "silent": 8,  # percent never sending ICMP errors
    "ecmp": 20,  # percent of targets with two parallel access routers (per-flow hashing)
    "middlebox": 25,  # percent of targets with a catalog middlebox on their access path
    "no_mptcp": 8,  # percent of targets answering in plain TCP
    "no_answer": 5,  # percent never answering (a firewall dropping every TCP segment)
    "closed": 3,  # percent resetting (nothing listens)
}
LIMITS = {"targets": (1, 1000), "seed": (0, 2**31), "port": (1, 65535), "per_region": (1, 50),
          "max_access": (1, 8), "ratelimit_ms": (1, 60000)}  # fmt: skip


class InternetError(MbtestError):
    """Parameters of the emulated Internet that cannot be built."""


@dataclass
class Made:
    nodes: list[dict[str, Any]] = field(default_factory=list)
    links: list[dict[str, Any]] = field(default_factory=list)
    truth: dict[str, Any] = field(default_factory=dict)


def settings(table: dict[str, Any], where: str = "internet") -> dict[str, int]:
    """The generator's parameters, checked: one sentence for the first bad one."""
    unknown = sorted(set(table) - set(DEFAULTS))
    if unknown:
        raise InternetError(
            f"{where}: unknown internet key {unknown[0]!r} (keys: {', '.join(DEFAULTS)})"
        )
    out = dict(DEFAULTS)
    for key, value in table.items():
        low, high = LIMITS.get(key, (0, 100))
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise InternetError(f"{where}: internet {key} must be an integer {low}-{high}")
        out[key] = value
    if out["no_mptcp"] + out["no_answer"] + out["closed"] > 100:
        raise InternetError(f"{where}: no_mptcp + no_answer + closed exceed 100 percent")
    return out


class _Builder:
    """Nodes, links with their addresses, and routes, accumulated as the paths are laid."""

    def __init__(self) -> None:
        self.made = Made()
        self.nodes: dict[str, dict[str, Any]] = {}
        self.ifaces: dict[str, int] = {}
        self.link_count = 0
        self.addresses: dict[str, list[str]] = {}  # node -> its addresses (truth)

    def node(self, name: str, role: str, **extra: Any) -> dict[str, Any]:
        if name not in self.nodes:
            self.nodes[name] = {"name": name, "role": role, "routes": [], **extra}
            self.made.nodes.append(self.nodes[name])
            self.addresses[name] = []
        return self.nodes[name]

    def link(self, a: str, b: str) -> tuple[dict[str, str], dict[str, str]]:
        """A point-to-point link a - b; the two ends' (v4, v6) addresses."""
        k = self.link_count
        self.link_count += 1
        if k >= 1 << 16:
            raise InternetError("the emulated Internet has more links than its address plan")
        v4 = ipaddress.IPv4Address(int(ipaddress.IPv4Address("10.64.0.0")) + 4 * k)
        link, addresses = {}, []
        for side, (i, name) in zip("ab", enumerate((a, b), 1), strict=True):
            ifname = f"eth{self.ifaces.get(name, 0)}"
            self.ifaces[name] = self.ifaces.get(name, 0) + 1
            four, six = str(v4 + i), str(ipaddress.IPv6Address(f"fd00:64:0:{k:x}::{i}"))
            self.addresses[name] += [four, six]
            link[side] = {"node": name, "ifname": ifname, "addresses": [f"{four}/30", f"{six}/64"]}
            addresses.append({"4": four, "6": six})
        self.made.links.append(link)
        return addresses[0], addresses[1]

    def route(self, name: str, to: str, via: list[str]) -> None:
        self.nodes[name]["routes"].append({"to": to, "via": via[0] if len(via) == 1 else via})

    def default(self, name: str, via: dict[str, str]) -> None:
        for v in ("4", "6"):
            self.route(name, "default", [via[v]])


def expand(table: dict[str, Any], where: str = "internet") -> Made:
    """The emulated Internet of these parameters (the same seed, the same Internet)."""
    p = settings(table, where)
    rng = random.Random(p["seed"])
    b = _Builder()
    b.node("client", "client")
    b.node("core1", "router")
    b.node("core2", "router")
    client_end, core1_up = b.link("client", "core1")
    b.default("client", core1_up)
    core1_down, core2_up = b.link("core1", "core2")
    b.default("core2", core1_down)
    hops: dict[str, dict[str, Any]] = {
        "core1": _hop("core1", "router"),
        "core2": _hop("core2", "router"),
    }
    regions: dict[int, tuple[str, dict[str, str]]] = {}
    targets = []
    for i in range(p["targets"]):
        r = i // p["per_region"]
        if r not in regions:
            name = f"g{r}"
            kind = _router_kind(rng, p)
            _router(b, name, kind, p)
            up, down = b.link("core2", name)
            b.default(name, up)
            regions[r] = (name, down)
            hops[name] = _hop(name, kind, p)
        region, region_addr = regions[r]
        targets.append(_target_path(b, rng, p, i, region, region_addr, hops))
    b.route("core1", "10.64.0.0/10", [core2_up["4"]])  # (connected links: more specific)
    b.route("core1", "fd00:64::/32", [core2_up["6"]])
    for t in targets:  # every target's prefix, down from the core to its region
        for v in ("4", "6"):
            b.route("core2", t["prefix"][v], [t["region_address"][v]])
    for t in targets:
        t.pop("region_address")
    for node_hops in hops.values():
        node_hops["addresses"] = b.addresses[node_hops["node"]]
    b.made.truth = {
        "generator": "internet",
        "params": p,
        "client": {"4": client_end["4"], "6": client_end["6"]},
        "targets": targets,
        "routers": {h["node"]: h for h in hops.values()},
    }
    return b.made


def _hop(name: str, kind: str, p: dict[str, int] | None = None) -> dict[str, Any]:
    """A router's ground truth: how it answers expired probes."""
    return {
        "node": name,
        "kind": kind,  # router (full quotes), quote8, ratelimit, silent, or a middlebox slot
        "quote_bytes": 8 if kind == "quote8" else None,  # None: the whole datagram
        "silent": kind == "silent",
        "ratelimit_ms": p["ratelimit_ms"] if p and kind == "ratelimit" else None,
    }


def _pick(rng: random.Random, shares: list[tuple[str, int]], otherwise: str) -> str:
    """One of the kinds, each with its percentage of the draws (one draw)."""
    roll = rng.uniform(0, 100)
    for kind, percent in shares:
        if roll < percent:
            return kind
        roll -= percent
    return otherwise


def _router_kind(rng: random.Random, p: dict[str, int]) -> str:
    return _pick(rng, [(k, p[k]) for k in ("quote8", "ratelimit", "silent")], "router")


def _router(b: _Builder, name: str, kind: str, p: dict[str, int]) -> dict[str, Any]:
    """A router node of this kind: quote8 is a slot running the quote trimmer (logged like
    any middlebox), ratelimit Linux's own ICMP token bucket, silent drops its errors."""
    if kind == "quote8":
        return b.node(name, "slot", middlebox=QUOTE_TRIM)
    node = b.node(name, "router")
    if kind == "ratelimit":
        ms = str(p["ratelimit_ms"])
        node["sysctls"] = {"net.ipv4.icmp_ratelimit": ms, "net.ipv6.icmp.ratelimit": ms}
    elif kind == "silent":
        node["icmp_errors"] = False
    return node


def _target_path(b, rng, p, i, region, region_addr, hops) -> dict[str, Any]:
    """Target i's access path (its own routers) and the target, with their ground truth."""
    length = rng.randint(1, p["max_access"])
    ecmp = length >= 2 and rng.uniform(0, 100) < p["ecmp"]
    slot_at = None  # a middlebox needs a router after it: its change is then observable
    first_plain = 3 if ecmp else 1  # (not right after a pair: a slot has two sides)
    if length > first_plain and rng.uniform(0, 100) < p["middlebox"]:
        slot_at = rng.randint(first_plain, length - 1)
    spec = rng.choice(MIDDLEBOXES) if slot_at else None
    listen = _pick(
        rng, [("tcp", p["no_mptcp"]), ("silent", p["no_answer"]), ("closed", p["closed"])], "mptcp"
    )
    names: list[list[str]] = []
    for j in range(1, length + 1):
        if ecmp and j == 1:
            pair = [f"a{i}x1a", f"a{i}x1b"]
            for name in pair:
                b.node(name, "router")
                hops[name] = {**_hop(name, "router"), "ecmp": True}
            names.append(pair)
            continue
        name = f"a{i}x{j}"
        if j == slot_at:
            b.node(name, "slot", middlebox=spec)
            hops[name] = {**_hop(name, "router"), "middlebox": spec}
        else:
            kind = _router_kind(rng, p)
            _router(b, name, kind, p)
            hops[name] = _hop(name, kind, p)
        names.append([name])
    target = f"t{i}"
    b.node(target, "target", listen=listen, port=p["port"])
    # the links, upstream first; every node's default points up, the target's prefix down
    upstream = [[region], *names]
    down_of: dict[str, list[dict[str, str]]] = {}
    for level, here in enumerate(names):
        above = upstream[level]
        for name in here:
            for parent in above:
                up, down = b.link(parent, name)
                down_of.setdefault(parent, []).append(down)
                if parent == above[0]:
                    b.default(name, up)
    last_up, target_addr = b.link(names[-1][0], target)  # (never a pair: one comes after)
    b.default(target, last_up)
    prefix = {
        "4": str(ipaddress.ip_interface(f"{target_addr['4']}/30").network),
        "6": str(ipaddress.ip_interface(f"{target_addr['6']}/64").network),
    }
    # (the last access router is on the target's link: its route is the connected one)
    for here in upstream:
        for name in here:
            gateways = down_of.get(name, [])
            if not gateways:
                continue
            if len(gateways) > 1:  # the ECMP router hashes flows over both
                b.nodes[name].setdefault("sysctls", {})["net.ipv4.fib_multipath_hash_policy"] = "1"
            for v in ("4", "6"):
                b.route(name, prefix[v], [g[v] for g in gateways])
    distance = 3 + length + 1
    path_truth: list[dict[str, Any]] = [
        {"ttl": 1, "nodes": ["core1"]},
        {"ttl": 2, "nodes": ["core2"]},
        {"ttl": 3, "nodes": [region]},
    ]
    path_truth += [{"ttl": 3 + j, "nodes": here} for j, here in enumerate(names, 1)]
    middlebox = None
    if slot_at:
        middlebox = {"node": f"a{i}x{slot_at}", "ttl": 3 + slot_at, "spec": spec}
    return {
        "name": target,
        "address": {"4": target_addr["4"], "6": target_addr["6"]},
        "port": p["port"],
        "listen": listen,
        "distance": distance,
        "ecmp_ttl": 4 if ecmp else None,
        "middlebox": middlebox,
        "path": path_truth,
        "prefix": prefix,
        "region_address": region_addr,
    }
