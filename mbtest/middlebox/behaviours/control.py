"""The controls: a middlebox that changes nothing, and one that only raises an alert."""

from __future__ import annotations

from mbtest.middlebox.base import ACCEPT, Behaviour, Cell, Verdict, change
from mbtest.middlebox.behaviours.options import OPTION_30
from mbtest.middlebox.flows import PacketContext
from mbtest.packet.edit import TcpPacket


class Pass(Behaviour):
    NAME = "pass"
    PASSIVE = True  # it changes nothing by design: seeing packets is what it does
    MODELS = "a middlebox that forwards everything through userspace (the control)"
    DOES = "queues every TCP packet and accepts it unchanged"
    EXPECTED = "MPTCP on all subflows, data intact"
    RFC = "§3"
    CELLS = (Cell("pass", "mptcp-unaffected"),)

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        return ACCEPT

    def native_args(self) -> list[str]:
        return []


class IpsAlert(Behaviour):
    NAME = "ips-alert"
    MODELS = "an IPS raising its TCP option 30 signature (Cisco IPS signature 1306)"
    DOES = "forwards everything unchanged and logs an alert for each SYN carrying option 30"
    EXPECTED = "MPTCP unaffected"
    RFC = "§3"
    CELLS = (Cell("ips-alert", "mptcp-unaffected"),)

    def queue_matches(self) -> list[list[str]]:
        return [["--tcp-flags", "SYN", "SYN", *OPTION_30]]

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if pkt.syn and pkt.mptcp_spans():
            return Verdict(
                changes=[change(ctx, pkt, "alert", None, "TCP option 30 in SYN (signature 1306)")]
            )
        return ACCEPT
