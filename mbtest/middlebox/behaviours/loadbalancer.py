"""A load balancer that sends a connection's joins to another backend."""

from __future__ import annotations

import ipaddress

from mbtest.middlebox.base import ACCEPT, Behaviour, Cell, Verdict, change, span_matches
from mbtest.middlebox.flows import PacketContext
from mbtest.middlebox.params import Param
from mbtest.packet.edit import TcpPacket


class LbSplit(Behaviour):
    NAME = "lb-split"
    MODELS = "a load balancer spreading new 4-tuples over backends (Cisco ACE): joins go elsewhere"
    DOES = (
        "sends the subflows opened by MP_JOIN to another backend (destination NAT) and "
        "rewrites that backend's answers back"
    )
    EXPECTED = "the backend does not know the token: RST (MP_TCPRST); the connection continues"
    RFC = "§3.2"
    CELLS = (
        Cell("lb-split", "lb-unknown-token", topology="load-balanced", slot="lb",
             params6="backend=fd00:4:4::2"),
    )  # fmt: skip
    PARAMS = (Param("backend", "address", "10.4.4.2", "where joins are sent"),)
    CHAIN = "PREROUTING"  # a new destination must be routed

    def __init__(self, params=None):
        super().__init__(params)
        self.replies: dict[tuple, str] = {}  # (backend, port, client, port) -> the original address

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        state = ctx.flow.state
        raw = bytes(pkt.options)
        if (
            pkt.syn
            and not pkt.is_ack
            and any(span_matches(raw, s, ("MP_JOIN",)) for s in pkt.mptcp_spans())
        ):
            state["original"] = pkt.dst
            self.replies[(self.backend, pkt.dport, pkt.src, pkt.sport)] = pkt.dst
        original = state.get("original")
        reply_to = self.replies.get((pkt.src, pkt.sport, pkt.dst, pkt.dport))
        v4 = pkt.version == 4
        if original is not None and pkt.dst == original and ctx.direction == "c>s":
            before, after, offset, name = original, self.backend, (16 if v4 else 24), "destination"
        elif reply_to is not None:
            before, after, offset, name = self.backend, reply_to, (12 if v4 else 8), "source"
        else:
            return ACCEPT
        packed = ipaddress.ip_address(after).packed
        pkt.buf[offset : offset + len(packed)] = packed
        return Verdict("modified", pkt.to_bytes(), changes=[change(ctx, pkt, name, before, after)])
