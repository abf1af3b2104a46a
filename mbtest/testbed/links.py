"""Links, addresses and routes with pyroute2 (netlink), never by shelling out to ``ip``."""

from __future__ import annotations

import ipaddress

from pyroute2 import IPRoute
from pyroute2.netlink.exceptions import NetlinkError

from mbtest.errors import MbtestError


def veth(ns_a: str, if_a: str, ns_b: str, if_b: str) -> None:
    """A veth pair with one end in each namespace, both up (with loopback)."""
    temp = f"mbt{abs(hash((ns_a, if_a))) % 10**9:x}"[:15]
    try:
        with IPRoute() as ipr:
            ipr.link("add", ifname=temp, kind="veth", peer={"ifname": if_b, "net_ns_fd": ns_b})
            ipr.link("set", index=ipr.link_lookup(ifname=temp)[0], net_ns_fd=ns_a)
        with IPRoute(netns=ns_a) as ipr:
            ipr.link("set", index=ipr.link_lookup(ifname=temp)[0], ifname=if_a)
        for ns, ifname in ((ns_a, if_a), (ns_b, if_b)):
            with IPRoute(netns=ns) as ipr:
                for name in (ifname, "lo"):
                    ipr.link("set", index=ipr.link_lookup(ifname=name)[0], state="up")
    except NetlinkError as e:
        raise MbtestError(f"cannot link {ns_a}:{if_a} to {ns_b}:{if_b}: {e}") from None


def address(ns: str, ifname: str, cidr: str) -> None:
    """Add an address (IPv6 without duplicate address detection, so it is usable at once)."""
    iface = ipaddress.ip_interface(cidr)
    extra = {"flags": 0x02} if iface.version == 6 else {}  # IFA_F_NODAD
    with IPRoute(netns=ns) as ipr:
        index = ipr.link_lookup(ifname=ifname)[0]
        ipr.addr(
            "add",
            index=index,
            address=str(iface.ip),
            prefixlen=iface.network.prefixlen,
            family=10 if iface.version == 6 else 2,
            **extra,
        )


def route(ns: str, dst: str, gateway: str) -> None:
    with IPRoute(netns=ns) as ipr:
        ipr.route("add", dst=dst, gateway=gateway)
