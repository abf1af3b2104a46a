"""Userspace behaviours (NFQUEUE): pure functions of a packet and its flow."""

from __future__ import annotations

import dataclasses
import ipaddress
import struct

from mbtest.errors import CodecError
from mbtest.middlebox.base import (
    ACCEPT,
    DIRECTIONS,
    SUBTYPE_CHOICES,
    Behaviour,
    Verdict,
    change,
    direction_matches,
    span_matches,
)
from mbtest.middlebox.flows import SEGMENT_CLASSES, PacketContext
from mbtest.middlebox.params import MiddleboxError, Param
from mbtest.mptcp import options as mptcp
from mbtest.packet.edit import TcpPacket, option_spans, rewrite_options

OPTION_30 = ["-m", "tcp", "--tcp-option", "30"]
SEGMENT_MATCH = {  # both SYNs either way: the SYN tells who opened the flow
    "syn": ["--tcp-flags", "SYN", "SYN"],
    "synack": ["--tcp-flags", "SYN", "SYN"],
}
# MP_CAPABLE and MP_JOIN only ever travel in the first packets of a (sub)flow: the SYN, the
# SYN/ACK, the third ACK and (MP_CAPABLE) the first data segment or its retransmissions.
HANDSHAKE_ONLY = {"MP_CAPABLE", "MP_JOIN"}
FIRST_PACKETS = ["-m", "connbytes", "--connbytes", "0:10", "--connbytes-dir", "both",
                 "--connbytes-mode", "packets"]  # fmt: skip


def option_queue(subtypes: tuple[str, ...], segments: str) -> list[list[str]]:
    """Queue only packets that can carry the options a behaviour acts on: option 30 always,
    and the SYN flags or the first packets of the flow where that is all it needs."""
    if segments in SEGMENT_MATCH:
        return [[*SEGMENT_MATCH[segments], *OPTION_30]]
    if segments == "third-ack" or set(subtypes) <= HANDSHAKE_ONLY:
        return [[*OPTION_30, *FIRST_PACKETS]]
    return [OPTION_30]


SEGMENTS = Param("segments", "choice", "all", "which segments", SEGMENT_CLASSES)
DIRECTION = Param("direction", "choice", "both", "which direction", DIRECTIONS)


class Pass(Behaviour):
    NAME = "pass"
    PASSIVE = True  # it changes nothing by design: seeing packets is what it does
    MODELS = "a middlebox that forwards everything through userspace (the control)"
    DOES = "queues every TCP packet and accepts it unchanged"
    EXPECTED = "MPTCP on all subflows, data intact"
    RFC = "§3"

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

    def queue_matches(self) -> list[list[str]]:
        return [["--tcp-flags", "SYN", "SYN", *OPTION_30]]

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if pkt.syn and pkt.mptcp_spans():
            return Verdict(
                changes=[change(ctx, pkt, "alert", None, "TCP option 30 in SYN (signature 1306)")]
            )
        return ACCEPT


def _segment_wanted(segments: str, ctx: PacketContext) -> bool:
    return segments in ctx.classes


class StripOption(Behaviour):
    NAME = "strip-option"
    MODELS = (
        "a firewall normalising TCP options (Cisco ASA default, MBClick RemoveTCPOpt, EOL rewriter)"
    )
    DOES = (
        "removes the chosen MPTCP options: overwritten by NOPs, deleted (header shrunk) "
        "or cut by an EOL"
    )
    EXPECTED = (
        "fallback to TCP when MP_CAPABLE is stripped; subflow reset on a join path; data intact"
    )
    RFC = "§3.1, §3.7, §6"
    PARAMS = (
        Param("subtypes", "choices", ("MP_CAPABLE",), "MPTCP options to strip", SUBTYPE_CHOICES),
        SEGMENTS,
        Param("mode", "choice", "nop", "how: NOPs, removal, or an EOL", ("nop", "remove", "eol")),
        Param(
            "after",
            "int",
            0,
            "leave alone the first N packets of each flow in the chosen "
            "direction (both directions counted when direction=both)",
            (),
            0,
            1 << 30,
        ),
        DIRECTION,
    )

    def queue_matches(self) -> list[list[str]]:
        return [OPTION_30] if self.after else option_queue(self.subtypes, self.segments)

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if not _segment_wanted(self.segments, ctx) or not direction_matches(
            self.direction, ctx.direction
        ):
            return ACCEPT
        seen = sum(ctx.flow.packets.values()) if self.direction == "both" else ctx.index
        if seen <= self.after:
            return ACCEPT
        raw = bytes(pkt.options)
        spans = [s for s in pkt.mptcp_spans() if span_matches(raw, s, self.subtypes)]
        if not spans:
            return ACCEPT
        pkt.options = rewrite_options(raw, spans, self.mode)
        removed = b"".join(raw[s.start : s.end] for s in spans)
        log = change(ctx, pkt, f"tcp.options ({self.mode})", raw, bytes(pkt.options))
        log["removed"] = removed.hex()
        return Verdict("modified", pkt.to_bytes(), changes=[log])


class DropOption(Behaviour):
    NAME = "drop-option"
    MODELS = (
        "a firewall dropping packets with MPTCP options to force fallback, or joins, or ADD_ADDR"
    )
    DOES = "drops packets carrying the chosen MPTCP options"
    EXPECTED = (
        "SYNs dropped: retry without MP_CAPABLE; joins dropped: the subflow is not established"
    )
    RFC = "§3.1, §3.2, §3.4.1, §6"
    PARAMS = (
        Param("subtypes", "choices", ("MP_CAPABLE",), "MPTCP options to drop on", SUBTYPE_CHOICES),
        SEGMENTS,
        DIRECTION,
    )

    def queue_matches(self) -> list[list[str]]:
        return option_queue(self.subtypes, self.segments)

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if not _segment_wanted(self.segments, ctx) or not direction_matches(
            self.direction, ctx.direction
        ):
            return ACCEPT
        raw = bytes(pkt.options)
        hit = [s for s in pkt.mptcp_spans() if span_matches(raw, s, self.subtypes)]
        if not hit:
            return ACCEPT
        names = "+".join(mptcp.subtype_name(s.subtype(raw)) for s in hit)
        return Verdict("drop", changes=[change(ctx, pkt, "packet", f"carrying {names}", "dropped")])


def _rst_for(syn: TcpPacket) -> bytes:
    """A RST+ACK from the SYN's destination back to its source, acknowledging the SYN."""
    tcp = struct.pack(
        "!HHIIBBHHH", syn.dport, syn.sport, 0, (syn.seq + 1) & 0xFFFFFFFF, 5 << 4, 0x14, 0, 0, 0
    )
    src, dst = ipaddress.ip_address(syn.dst).packed, ipaddress.ip_address(syn.src).packed
    if syn.version == 4:
        ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 40, 0, 0x4000, 64, 6, 0, src, dst)
    else:
        ip = struct.pack("!IHBB16s16s", 6 << 28, 20, 6, 64, src, dst)
    return TcpPacket(ip + tcp).to_bytes()


class RstJoin(Behaviour):
    NAME = "rst-join"
    MODELS = "a firewall that answers MP_JOIN SYNs with a reset (draft-lopez §3.2)"
    DOES = "drops each SYN carrying MP_JOIN and sends a forged RST to its sender"
    EXPECTED = "that subflow fails; the connection continues on the others"
    RFC = "§3.2"

    def queue_matches(self) -> list[list[str]]:
        return [["--tcp-flags", "SYN,ACK", "SYN", *OPTION_30]]

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        raw = bytes(pkt.options)
        if not (
            "syn" in ctx.classes
            and any(span_matches(raw, s, ("MP_JOIN",)) for s in pkt.mptcp_spans())
        ):
            return ACCEPT
        rst = _rst_for(pkt)
        return Verdict(
            "drop",
            inject=[rst],
            changes=[
                change(ctx, pkt, "packet", "SYN carrying MP_JOIN", "dropped"),
                change(
                    ctx,
                    pkt,
                    "injected",
                    None,
                    f"RST to {ctx.flow_name.split(' > ')[0]}: {rst.hex()}",
                ),
            ],
        )


# field name -> (option class, dataclass field, value kind)
MANGLE_FIELDS = {
    "MP_CAPABLE.version": (mptcp.MpCapable, "version", int),
    "MP_CAPABLE.checksum_required": (mptcp.MpCapable, "checksum_required", bool),
    "MP_CAPABLE.extensibility": (mptcp.MpCapable, "extensibility", bool),
    "MP_CAPABLE.hmac_sha256": (mptcp.MpCapable, "hmac_sha256", bool),
    "ADD_ADDR.address": (mptcp.AddAddr, "address", ipaddress.ip_address),
    "ADD_ADDR.port": (mptcp.AddAddr, "port", int),
    "DSS.dsn": (mptcp.Dss, "dsn", int),
    "MP_JOIN.token": (mptcp.MpJoinSyn, "token", int),
}


class MangleOption(Behaviour):
    NAME = "mangle-option"
    MODELS = "a middlebox rewriting a field inside an MPTCP option"
    DOES = "rewrites one field of one MPTCP option and fixes the TCP checksum"
    EXPECTED = "flags follow what each end saw; a rewritten ADD_ADDR fails its HMAC and is ignored"
    RFC = "§3.1, §3.4.1"
    PARAMS = (
        Param(
            "field", "choice", "MP_CAPABLE.checksum_required", "which field", tuple(MANGLE_FIELDS)
        ),
        Param("value", "str", "0", "the new value (number, true/false, or address)"),
        SEGMENTS,
        DIRECTION,
    )

    def __init__(self, params=None):
        super().__init__(params)
        cls, name, kind = MANGLE_FIELDS[self.field]
        try:
            if kind is bool:
                self.new_value = str(self.value).lower() in ("1", "true", "yes")
            elif kind is int:
                self.new_value = int(self.value, 0)
            else:
                self.new_value = kind(self.value)
        except ValueError:
            raise MiddleboxError(
                f"mangle-option: value={self.value!r} does not suit field {self.field}"
            ) from None
        self.option_class, self.attribute = cls, name

    def queue_matches(self) -> list[list[str]]:
        return option_queue((self.field.split(".")[0],), self.segments)

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if not _segment_wanted(self.segments, ctx) or not direction_matches(
            self.direction, ctx.direction
        ):
            return ACCEPT
        raw = bytearray(pkt.options)
        changes = []
        for span in pkt.mptcp_spans():
            try:
                option = mptcp.decode(bytes(raw[span.start : span.end]), strict=False)
            except CodecError:
                continue
            if not isinstance(option, self.option_class) or getattr(option, self.attribute) is None:
                continue
            if getattr(option, self.attribute) == self.new_value:
                continue
            try:
                new = mptcp.encode(dataclasses.replace(option, **{self.attribute: self.new_value}))
            except (CodecError, TypeError):
                continue
            if len(new) != span.end - span.start:
                continue  # a rewrite never changes the option's length
            changes.append(
                change(
                    ctx, pkt, self.field, str(getattr(option, self.attribute)), str(self.new_value)
                )
            )
            raw[span.start : span.end] = new
        if not changes:
            return ACCEPT
        pkt.options = raw
        return Verdict("modified", pkt.to_bytes(), changes=changes)


class PayloadFlip(Behaviour):
    NAME = "payload-flip"
    MODELS = "a middlebox corrupting payload while keeping the TCP checksum valid"
    DOES = "inverts payload bytes of chosen data segments and fixes the TCP checksum"
    EXPECTED = (
        "with checksums: MP_FAIL and fallback (one subflow) or RST (several); without: changed data"
    )
    RFC = "§3.7"
    PARAMS = (
        Param("every", "int", 1, "flip every n-th data segment", (), 1, 1 << 30),
        Param(
            "segment",
            "int",
            0,
            "flip only this data segment (1-based; 0: use every)",
            (),
            0,
            1 << 30,
        ),
        Param("offset", "int", 0, "first payload byte to flip", (), 0, 65535),
        Param("count", "int", 1, "how many bytes", (), 1, 65535),
        Param("direction", "choice", "c2s", "which direction", DIRECTIONS),
    )

    def queue_matches(self) -> list[list[str]]:
        return [[]]

    def native_args(self) -> list[str]:
        return [
            "--every", str(self.every), "--segment", str(self.segment),
            "--offset", str(self.offset), "--count", str(self.count),
            "--direction", self.direction,
        ]  # fmt: skip

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if not ctx.data_index or not direction_matches(self.direction, ctx.direction):
            return ACCEPT
        wanted = (
            ctx.data_index == self.segment if self.segment else ctx.data_index % self.every == 0
        )
        length = pkt.payload_length  # no copy of the payload: only the flipped bytes
        if not wanted or self.offset >= length:
            return ACCEPT
        start = pkt.ip_len + pkt.tcp_header_len + self.offset
        end = min(length, self.offset + self.count)
        before = bytes(pkt.buf[start : start + end - self.offset])
        after = bytes(b ^ 0xFF for b in before)
        pkt.patch(start, after)
        log = change(ctx, pkt, f"payload[{self.offset}:{end}]", before, after)
        return Verdict("modified", bytes(pkt.buf), changes=[log])


class WindowShrink(Behaviour):
    NAME = "window-shrink"
    MODELS = "a middlebox that shrinks advertised receive windows (a shaping or buggy firewall)"
    DOES = "divides the TCP window field of every segment, or subtracts from it"
    EXPECTED = "MPTCP unaffected (slower); data intact"
    RFC = "§3.3.4, §6"
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
    DOES = "shifts the client's sequence numbers by a per-flow delta and the server's "\
           "acknowledgements back, and SACK blocks when fix-sack"  # fmt: skip
    EXPECTED = "MPTCP unaffected (relative subflow sequence numbers); data intact"
    RFC = "§3.3.1, §6"
    PARAMS = (
        Param("delta", "int", 0, "sequence shift (0: a random one per flow)", (), 0, 0xFFFFFFFF),
        Param("fix_sack", "bool", True, "also shift SACK blocks in the server's segments"),
    )

    def __init__(self, params=None):
        super().__init__(params)
        import random

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


class LbSplit(Behaviour):
    NAME = "lb-split"
    MODELS = "a load balancer spreading new 4-tuples over backends (Cisco ACE): joins go elsewhere"
    DOES = "sends the subflows opened by MP_JOIN to another backend (destination NAT) and "\
           "rewrites that backend's answers back"  # fmt: skip
    EXPECTED = "the backend does not know the token: RST (MP_TCPRST); the connection continues"
    RFC = "§3.2"
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


USERSPACE = (
    Pass, IpsAlert, StripOption, DropOption, RstJoin, MangleOption, PayloadFlip, WindowShrink,
    IpIdRewrite, SeqRewrite, LbSplit,
)  # fmt: skip
