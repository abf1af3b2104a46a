"""Header rewriting: windows, IPv4 identification, sequence numbers."""

from __future__ import annotations

import random

from mbtest.middlebox.base import (
    ACCEPT,
    DIRECTIONS,
    Behaviour,
    Cell,
    Verdict,
    change,
    direction_matches,
)
from mbtest.middlebox.flows import PacketContext
from mbtest.middlebox.params import Param
from mbtest.packet.edit import TcpPacket, option_spans


class WindowShrink(Behaviour):
    NAME = "window-shrink"
    MODELS = "a middlebox that shrinks advertised receive windows (a shaping or buggy firewall)"
    DOES = (
        "divides the TCP window field of every segment after the handshake by divisor, then "
        "subtracts delta (never below 1); SYNs keep theirs (their window is not scaled)"
    )
    EXPECTED = "MPTCP unaffected (slower); data intact"
    RFC = "§3.3.4, §6"
    CELLS = (Cell("window-shrink", "mptcp-unaffected", "divisor=4"),)
    PARAMS = (
        Param("divisor", "int", 2, "divide the window by this", (), 1, 65535),
        Param("delta", "int", 0, "then subtract this (not below 1)", (), 0, 65535),
        Param("direction", "choice", "both", "which direction", DIRECTIONS),
    )

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if pkt.syn or not direction_matches(self.direction, ctx.direction):
            return ACCEPT
        before = pkt.window
        after = max(1, before // self.divisor - self.delta)
        if after == before:
            return ACCEPT
        pkt.patch(pkt.ip_len + 14, after.to_bytes(2, "big"))
        return Verdict(
            "modified", bytes(pkt.buf), changes=[change(ctx, pkt, "tcp.window", before, after)]
        )


class IpIdRewrite(Behaviour):
    NAME = "ipid-rewrite"
    MODELS = "a middlebox that rewrites IPv4 identification fields (a normaliser, some NATs)"
    DOES = "replaces the IPv4 ID of every packet by a counter and fixes the header checksum"
    EXPECTED = "MPTCP unaffected; data intact"
    RFC = "§6"
    CELLS = (Cell("ipid-rewrite", "mptcp-unaffected"),)
    IP_VERSIONS = (4,)  # IPv6 has no identification field
    PARAMS = (Param("start", "int", 1, "first ID written", (), 0, 65535),)

    def __init__(self, params=None):
        super().__init__(params)
        self.next_id = self.start

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if pkt.version != 4:
            return ACCEPT
        before = int.from_bytes(pkt.buf[4:6], "big")
        after, self.next_id = self.next_id, (self.next_id + 1) & 0xFFFF
        pkt.buf[4:6] = after.to_bytes(2, "big")
        pkt.fix_ip_checksum()
        return Verdict(
            "modified", bytes(pkt.buf), changes=[change(ctx, pkt, "ip.id", before, after)]
        )


class SeqRewrite(Behaviour):
    NAME = "seq-rewrite"
    MODELS = "a firewall randomising initial sequence numbers (MBClick ChangeSeq, Cisco ASA)"
    DOES = (
        "shifts the client's sequence numbers by a per-flow delta and the server's "
        "acknowledgements back, and SACK blocks when fix-sack"
    )
    EXPECTED = "MPTCP unaffected (relative subflow sequence numbers); data intact"
    RFC = "§3.3.1, §6"
    CELLS = (Cell("seq-rewrite", "mptcp-unaffected"),)
    PARAMS = (
        Param("delta", "int", 0, "sequence shift (0: a random one per flow)", (), 0, 0xFFFFFFFF),
        Param("fix_sack", "bool", True, "also shift SACK blocks in the server's segments"),
    )

    def __init__(self, params=None):
        super().__init__(params)
        self.random = random.Random()

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if ctx.direction == "?":
            return ACCEPT
        delta = ctx.flow.state.setdefault("delta", self.delta or self.random.randrange(1, 1 << 32))
        changes = []
        if ctx.direction == "c>s":
            before = pkt.seq
            changes.append(change(ctx, pkt, "tcp.seq", before, (before + delta) & 0xFFFFFFFF))
            pkt.seq = before + delta
        elif pkt.is_ack:
            before = pkt.ack
            changes.append(change(ctx, pkt, "tcp.ack", before, (before - delta) & 0xFFFFFFFF))
            pkt.ack = before - delta
            if self.fix_sack:
                raw = bytearray(pkt.options)
                for span in option_spans(raw):
                    if span.kind == 5:  # SACK: pairs of 32-bit edges
                        for at in range(span.start + 2, span.end - 3, 4):
                            edge = int.from_bytes(raw[at : at + 4], "big")
                            raw[at : at + 4] = ((edge - delta) & 0xFFFFFFFF).to_bytes(4, "big")
                if raw != pkt.options:
                    changes.append(
                        change(ctx, pkt, "tcp.options (SACK)", bytes(pkt.options), bytes(raw))
                    )
                    pkt.options = raw
        return Verdict("modified", pkt.to_bytes(), changes=changes)
