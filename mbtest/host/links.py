"""Links, addresses, routes and rules with pyroute2 (netlink), never by shelling out to ``ip``."""

from __future__ import annotations

import contextlib
import errno
import ipaddress
import os
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mbtest.errors import MbtestError
from mbtest.host import signals

IFA_F_NODAD = 0x02
T = TypeVar("T")


def in_namespace(ns: str | None, fn: Callable[[IPRoute], T]) -> T:
    """fn(ipr) with a netlink socket in namespace NS (None: this one), from a thread that
    entered it: pyroute2's own ``netns=`` forks a process for every socket, which made
    building a testbed slow (and its sockets belong to the thread that opens them)."""
    from mbtest.host import netns

    def run() -> T:
        shared = getattr(_batch, "ipr", None)
        if shared is not None:
            return fn(shared)
        with IPRoute() as ipr:
            return fn(ipr)

    return run() if ns is None else netns.call_in(ns, run)


_batch = threading.local()


def batch(ns: str, fn: Callable[[], T]) -> T:
    """fn() in one thread that entered namespace NS, every link, address, route, rule,
    path-manager and sysctl call inside it sharing that thread and one netlink socket."""
    from mbtest.host import netns

    def run() -> T:
        with IPRoute() as ipr:
            _batch.ipr, _batch.indexes, _batch.ethtool = ipr, {}, None
            try:
                return fn()
            finally:
                if _batch.ethtool is not None:
                    _batch.ethtool.close()
                _batch.ipr, _batch.indexes, _batch.ethtool = None, None, None

    return netns.call_in(ns, run)


def _index(ipr: IPRoute, ifname: str) -> int:
    """The interface's index; inside a batch, looked up once (a lookup dumps every link)."""
    indexes = getattr(_batch, "indexes", None)
    if indexes is not None and ifname in indexes:
        return indexes[ifname]
    found = ipr.link_lookup(ifname=ifname)
    if not found:
        raise MbtestError(f"no interface {ifname}")
    if indexes is not None:
        indexes[ifname] = found[0]
    return found[0]


@signals.critical
def veth(ns_a: str, if_a: str, ns_b: str, if_b: str, macs: tuple[str, str] | None = None) -> None:
    """A veth pair with one end in each namespace, both up (and their loopbacks); ``macs``
    sets the two ends' hardware addresses (so that neighbours can be written in advance).

    The pair is made from inside ``ns_a`` with its peer born in ``ns_b``: nothing is moved
    between namespaces (the costly part of making links), and a run killed mid-way leaves
    the pair only inside namespaces that ``mbtest cleanup`` removes.
    """

    def make(ipr: IPRoute) -> None:
        peer = {"ifname": if_b, "net_ns_fd": ns_b}
        extra = {}
        if macs is not None:
            extra["address"], peer["address"] = macs
        ipr.link("add", ifname=if_a, kind="veth", peer=peer, **extra)
        _up(ipr, if_a)

    try:
        in_namespace(ns_a, make)
        in_namespace(ns_b, lambda ipr: _up(ipr, if_b))
    except NetlinkError as e:
        raise MbtestError(f"cannot link {ns_a}:{if_a} to {ns_b}:{if_b}: {e.args[-1]}") from None


def _up(ipr: IPRoute, *names: str) -> None:
    """These links and the namespace's loopback up."""
    for name in (*names, "lo"):
        ipr.link("set", index=_index(ipr, name), state="up")


def _hand(ipr: IPRoute, index: int, target: str, new_name: str) -> None:
    """Link ``index`` down and into namespace ``target`` (a name or a path) as new_name."""
    ipr.link("set", index=index, state="down")
    ipr.link("set", index=index, net_ns_fd=target, ifname=new_name)


NUD_PERMANENT = 0x80


def tap(ns: str, ifname: str) -> None:
    """A tap device in namespace NS, up: where a veth end would stand when the other end is a
    guest's NIC (QEMU, started in NS, attaches to it by name)."""

    def make(ipr: IPRoute) -> None:
        ipr.link("add", ifname=ifname, kind="tuntap", mode="tap")
        _up(ipr, ifname)

    try:
        in_namespace(ns, make)
    except NetlinkError as e:
        raise MbtestError(f"cannot make tap {ifname} in {ns}: {e.args[-1]}") from None


@signals.critical
def move(ns: str, ifname: str, to_ns: str, new_name: str) -> None:
    """Move a link to another namespace, renamed there, up: a guest's tap goes where a
    veth end would stand for a cell, and comes back after (its VM keeps running)."""

    try:
        in_namespace(ns, lambda ipr: _hand(ipr, _index(ipr, ifname), to_ns, new_name))
        in_namespace(to_ns, lambda ipr: _up(ipr, new_name))
    except NetlinkError as e:
        raise MbtestError(
            f"cannot move {ns}:{ifname} to {to_ns}:{new_name}: {e.args[-1]}"
        ) from None


@signals.critical
def release(ns: str, ifname: str, new_name: str) -> None:
    """(inside a guest) Move a NIC from ``ns`` back to this process's own namespace as
    ``new_name``: before the cell's namespace is removed, whose stalled sockets can keep it
    (and its devices) alive for minutes."""
    home = f"/proc/{os.getpid()}/ns/net"
    try:
        in_namespace(ns, lambda ipr: _hand(ipr, _index(ipr, ifname), home, new_name))
    except NetlinkError as e:
        raise MbtestError(f"cannot move {ns}:{ifname} back: {e.args[-1]}") from None


def hardware_addresses() -> set[str]:
    """The hardware addresses of this namespace's links (lower case)."""
    with IPRoute() as ipr:
        return {(link.get_attr("IFLA_ADDRESS") or "").lower() for link in ipr.get_links()}


def await_home(macs: set[str], timeout: float = 15.0) -> None:
    """(inside a guest) Until the NICs ``macs`` are back in this namespace: a removed
    namespace hands its real devices back from a kernel worker, once its sockets are gone
    (later when a stalled connection held it), so the next cell must not look too early."""
    deadline = time.monotonic() + timeout
    wanted = {m.lower() for m in macs}
    while not wanted <= hardware_addresses():
        if time.monotonic() > deadline:
            missing = ", ".join(sorted(wanted - hardware_addresses()))
            raise MbtestError(f"the guest's NICs {missing} did not come back within {timeout:g} s")
        time.sleep(0.02)


@signals.critical
def adopt(mac: str, ns: str, ifname: str) -> None:
    """(inside a guest) Move the NIC with hardware address ``mac`` from this namespace into
    ``ns`` as ``ifname``, up: the guest's NICs are found by address, not bus order."""

    def push(ipr: IPRoute) -> None:
        found = [
            link["index"]
            for link in ipr.get_links()
            if (link.get_attr("IFLA_ADDRESS") or "").lower() == mac.lower()
        ]
        if not found:
            raise MbtestError(f"the guest has no NIC with hardware address {mac}")
        _hand(ipr, found[0], ns, ifname)

    try:
        in_namespace(None, push)
        in_namespace(ns, lambda ipr: _up(ipr, ifname))
    except NetlinkError as e:
        raise MbtestError(f"cannot move the NIC {mac} into {ns}: {e.args[-1]}") from None


@signals.critical
def neighbour(ns: str, ifname: str, address: str, mac: str) -> None:
    """A permanent neighbour entry: no ARP or neighbour discovery for it, and (unlike learnt
    entries) it does not count toward the kernel's neighbour table limit, which is one for
    all namespaces together (gc_thresh3, 1024 by default): a testbed of hundreds of nodes
    would overflow it and lose packets."""
    version = ipaddress.ip_address(address).version
    in_namespace(
        ns,
        lambda ipr: ipr.neigh(
            "add",
            dst=address,
            lladdr=mac,
            ifindex=_index(ipr, ifname),
            state=NUD_PERMANENT,
            family=2 if version == 4 else 10,
        ),
    )


@signals.critical
def address(ns: str, ifname: str, cidr: str) -> None:
    """Add an address (IPv6 without duplicate address detection, so it is usable at once)."""
    iface = ipaddress.ip_interface(cidr)
    extra = {"flags": IFA_F_NODAD} if iface.version == 6 else {}
    in_namespace(
        ns,
        lambda ipr: ipr.addr(
            "add",
            index=_index(ipr, ifname),
            address=str(iface.ip),
            prefixlen=iface.network.prefixlen,
            family=10 if iface.version == 6 else 2,
            **extra,
        ),
    )


@signals.critical
def route(
    ns: str,
    to: str,
    via: str,
    table: int | None = None,
    timeout: float = 5.0,
    also: tuple[str, ...] = (),
) -> None:
    """Add a route; retried while the gateway is not yet reachable, because the kernel adds
    an IPv6 prefix route only once the veth's carrier is seen, which may take a moment.
    With ``also``, one route over several gateways (equal-cost multipath, per-flow)."""
    version = ipaddress.ip_address(via).version
    dst = ("0.0.0.0/0" if version == 4 else "::/0") if to == "default" else to
    kwargs: dict = {"table": table} if table else {}
    if also:
        kwargs["multipath"] = [{"gateway": g} for g in (via, *also)]
    else:
        kwargs["gateway"] = via
    deadline = time.monotonic() + timeout

    def add(ipr: IPRoute) -> None:
        while True:
            try:
                ipr.route("add", dst=dst, family=2 if version == 4 else 10, **kwargs)
                return
            except NetlinkError as e:
                if (
                    e.code not in (errno.EHOSTUNREACH, errno.ENETUNREACH)
                    or time.monotonic() > deadline
                ):
                    raise MbtestError(
                        f"cannot add route to {to} via {via} in {ns}: {e.args[-1]}"
                    ) from None
                time.sleep(0.02)

    in_namespace(ns, add)


@signals.critical
def rule(ns: str, source: str, table: int) -> None:
    network = ipaddress.ip_network(source, strict=False)
    in_namespace(
        ns,
        lambda ipr: ipr.rule(
            "add",
            src=str(network.network_address),
            src_len=network.prefixlen,
            table=table,
            family=2 if network.version == 4 else 10,
        ),
    )


@signals.critical
def root_links(prefix: str) -> list[str]:
    """Links in the root namespace whose name starts with prefix (leftovers of a killed run)."""
    with IPRoute() as ipr:
        return [
            link.get_attr("IFLA_IFNAME")
            for link in ipr.get_links()
            if (link.get_attr("IFLA_IFNAME") or "").startswith(prefix)
        ]


@signals.critical
def delete_root_link(name: str) -> None:
    with IPRoute() as ipr:
        found = ipr.link_lookup(ifname=name)
        if found:
            ipr.link("del", index=found[0])


OFFLOADS = (
    "tx-tcp-segmentation", "tx-tcp6-segmentation", "tx-tcp-ecn-segmentation",
    "tx-tcp-mangleid-segmentation", "tx-generic-segmentation", "rx-gro", "rx-gro-list",
    "tx-checksum-ip-generic", "tx-checksum-ipv4", "tx-checksum-ipv6", "tx-scatter-gather",
)  # fmt: skip


@signals.critical
def wire_segments(ns: str, ifname: str) -> None:
    """Turn off segmentation, GRO and checksum offloads, so that captures and middleboxes see
    packets as they would be on a wire: MTU-sized, with real checksums."""
    from pyroute2 import Ethtool

    from mbtest.host import netns

    def turn_off(ethtool: Ethtool) -> None:
        features = ethtool.get_features(ifname)
        for name in OFFLOADS:
            if name in features.features:
                features.features[name].enable = False
        ethtool.set_features(ifname, features)

    def run() -> None:
        if getattr(_batch, "ipr", None) is not None:  # one ethtool socket for the batch
            if _batch.ethtool is None:
                _batch.ethtool = Ethtool()
            return turn_off(_batch.ethtool)
        with contextlib.closing(Ethtool()) as ethtool:
            return turn_off(ethtool)

    netns.call_in(ns, run)


@signals.critical
def set_mtu(ns: str, ifname: str, mtu: int) -> None:
    in_namespace(ns, lambda ipr: ipr.link("set", index=_index(ipr, ifname), mtu=mtu))
