"""The in-kernel MPTCP path manager over generic netlink (pyroute2's MPTCP family).

Every call enters the namespace for the duration of one netlink conversation.
"""

from __future__ import annotations

import enum
import ipaddress

from pyroute2 import MPTCP
from pyroute2.netlink import NLM_F_ACK, NLM_F_REQUEST
from pyroute2.netlink.generic.mptcp import MPTCP_PM_CMD_SET_FLAGS, mptcp_msg

from mbtest.host import netns


class EndpointFlag(enum.IntFlag):
    SIGNAL = 1
    SUBFLOW = 2
    BACKUP = 4
    FULLMESH = 8


def _addr_attrs(address: str | None, endpoint_id: int | None, flags: int | None, port: int | None):
    attrs: dict = {}
    if address is not None:
        ip = ipaddress.ip_address(address)
        attrs["addr4" if ip.version == 4 else "addr6"] = str(ip)
    if endpoint_id is not None:
        attrs["id"] = endpoint_id
    if flags is not None:
        attrs["flags"] = int(flags)
    if port:
        attrs["port"] = port
    return attrs


def set_limits(ns: str, subflows: int, add_addr_accepted: int) -> None:
    def run() -> None:
        with MPTCP() as pm:
            pm.limits("set", subflows=subflows, add_addr_accepted=add_addr_accepted)

    netns.call_in(ns, run)


def add_endpoint(
    ns: str, address: str, endpoint_id: int | None, flags: int, port: int | None = None
) -> None:
    def run() -> None:
        with MPTCP() as pm:
            pm.endpoint("add", **_addr_attrs(address, endpoint_id, flags, port))

    netns.call_in(ns, run)


def delete_endpoint(ns: str, endpoint_id: int) -> None:
    """Removing a signalled endpoint makes the kernel send REMOVE_ADDR and close its subflows."""

    def run() -> None:
        with MPTCP() as pm:
            pm.endpoint("del", id=endpoint_id)

    netns.call_in(ns, run)


def set_endpoint_flags(ns: str, endpoint_id: int, flags: int) -> None:
    """Changing the backup flag makes the kernel send MP_PRIO on the endpoint's subflows."""

    def run() -> None:
        with MPTCP() as pm:
            msg = mptcp_msg()
            msg["cmd"] = MPTCP_PM_CMD_SET_FLAGS
            msg["version"] = 1
            addr = {
                "attrs": [
                    (mptcp_msg.pm_addr.name2nla(k), v)
                    for k, v in _addr_attrs(None, endpoint_id, flags, None).items()
                ]
            }
            msg["attrs"] = [("MPTCP_PM_ATTR_ADDR", addr, 0x8000)]
            pm.nlm_request(msg, msg_type=pm.prid, msg_flags=NLM_F_REQUEST | NLM_F_ACK)

    netns.call_in(ns, run)


def endpoints(ns: str) -> list[dict]:
    def run() -> list[dict]:
        with MPTCP() as pm:
            out = []
            for msg in pm.endpoint("show"):
                addr = msg.get("MPTCP_PM_ATTR_ADDR")
                out.append(
                    {k.replace("MPTCP_PM_ADDR_ATTR_", "").lower(): v for k, v in addr["attrs"]}
                )
            return out

    return netns.call_in(ns, run)
