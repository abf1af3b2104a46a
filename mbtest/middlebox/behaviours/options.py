"""Firewalls acting on MPTCP options: strip them, drop their packets, reset joins, rewrite
a field. Pure functions of a packet and its flow (NFQUEUE)."""

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
    Cell,
    Verdict,
    change,
    direction_matches,
    span_matches,
)
from mbtest.middlebox.flows import SEGMENT_CLASSES, PacketContext
from mbtest.middlebox.params import MiddleboxError, Param
from mbtest.mptcp import options as mptcp
from mbtest.packet.edit import TcpPacket, rewrite_options

OPTION_30 = ["-m", "tcp", "--tcp-option", "30"]
SEGMENT_MATCH = {  # both SYNs either way: the SYN tells who opened the flow
    "syn": ["--tcp-flags", "SYN", "SYN"],
    "synack": ["--tcp-flags", "SYN", "SYN"],
}
# MP_CAPABLE and MP_JOIN only ever travel in the first packets of a (sub)flow: the SYN, the
# SYN/ACK, the third ACK and (MP_CAPABLE) the first data segment or its retransmissions.
HANDSHAKE_ONLY = {"MP_CAPABLE", "MP_JOIN"}
FIRST_PACKETS = [
    "-m",
    "connbytes",
    "--connbytes",
    "0:10",
    "--connbytes-dir",
    "both",
    "--connbytes-mode",
    "packets",
]


def option_queue(subtypes: tuple[str, ...], segments: str) -> list[list[str]]:
    """Queue only packets that can carry the options a behaviour acts on: option 30 always,
    and the SYN flags or the first packets of the flow where that is all it needs."""
    if segments in SEGMENT_MATCH:
        return [[*SEGMENT_MATCH[segments], *OPTION_30]]
    if segments == "third-ack" or set(subtypes) <= HANDSHAKE_ONLY:
        return [[*OPTION_30, *FIRST_PACKETS]]
    return [OPTION_30]


# Run conditions cells need for the event their expectation waits for.
JOIN_PATH_DATA = {"c2s_bytes": 2_000_000, "s2c_bytes": 2_000_000}  # enough to use both paths
ADD_ADDR_TIMER = {
    "sysctls": {"server": {"net.mptcp.add_addr_timeout": "1"}},  # the selftests' setting
    "hold": 4.0,
    "hold_until": {"server": {"AddAddrTx": 2}},  # until the first retransmission left
}

SEGMENTS = Param("segments", "choice", "all", "which segments", SEGMENT_CLASSES)
DIRECTION = Param("direction", "choice", "both", "which direction", DIRECTIONS)


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
    CELLS = (
        Cell("strip-mpc-syn-nop", "fallback-at-handshake", "segments=syn,mode=nop"),
        Cell("strip-mpc-syn-remove", "fallback-at-handshake", "segments=syn,mode=remove"),
        Cell("strip-mpc-synack", "fallback-at-handshake", "segments=synack"),
        Cell("strip-mpc-third-ack", "fallback-at-handshake", "direction=c2s,after=1"),
        Cell("strip-dss-data", "fallback-without-dss", "subtypes=DSS,segments=data"),
        Cell("eol-after-syn", "fallback-without-dss", "subtypes=ALL,segments=data,mode=eol"),
        Cell("strip-dss-join-path", "join-reset-middlebox", "subtypes=DSS,segments=data",
             topology="dual-path", slot="slotb", conditions=JOIN_PATH_DATA),
        Cell("strip-join-syn", "join-not-established", "subtypes=MP_JOIN,segments=syn",
             topology="dual-path", slot="slotb"),
        Cell("strip-join-synack", "join-synack-stripped", "subtypes=MP_JOIN,segments=synack",
             topology="dual-path", slot="slotb"),
        # where Linux puts ADD_ADDR: alone in the server's first packet after the handshake
        Cell("add-addr-stripped", "add-addr-removed", "subtypes=ADD_ADDR,segments=first",
             topology="dual-homed-server"),
        # announced once data has flowed: in a later pure ACK
        Cell("add-addr-stripped-late", "add-addr-removed", "subtypes=ADD_ADDR",
             topology="dual-homed-server", conditions={"announce": "late"}),
    )  # fmt: skip
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
    CELLS = (
        Cell("drop-mpc-syn", "fallback-at-handshake", "segments=syn"),
        Cell("drop-join-syn", "join-not-established", "subtypes=MP_JOIN,segments=syn",
             topology="dual-path", slot="slotb"),
        # the kernel selftests' ADD_ADDR timeout test: a 1 s timer, the connection held open
        Cell("add-addr-echo-dropped", "add-addr-retransmitted", "subtypes=ADD_ADDR_ECHO",
             topology="dual-homed-server", conditions=ADD_ADDR_TIMER),
    )  # fmt: skip
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
    CELLS = (Cell("rst-join", "join-not-established", topology="dual-path", slot="slotb"),)

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
FIELD_BITS = {"MP_CAPABLE.version": 4, "ADD_ADDR.port": 16, "DSS.dsn": 64, "MP_JOIN.token": 32}


class MangleOption(Behaviour):
    NAME = "mangle-option"
    MODELS = "a middlebox rewriting a field inside an MPTCP option"
    DOES = "rewrites one field of one MPTCP option and fixes the TCP checksum"
    EXPECTED = "flags follow what each end saw; a rewritten ADD_ADDR fails its HMAC and is ignored"
    RFC = "§3.1, §3.4.1"
    CELLS = (
        Cell("mangle-mpc-clear-a", "flags-consistent",
             "field=MP_CAPABLE.checksum_required,value=0,segments=synack", checksums=True),
        # §3.1: an MP_CAPABLE with B set that is not understood is ignored: fallback.
        Cell("mangle-mpc-set-b", "fallback-at-handshake",
             "field=MP_CAPABLE.extensibility,value=1,segments=syn"),
        Cell("add-addr-rewritten", "add-addr-ignored", "field=ADD_ADDR.address,value=10.3.6.99",
             topology="dual-homed-server", params6="field=ADD_ADDR.address,value=fd00:3:6::99"),
    )  # fmt: skip
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
        bad = MiddleboxError(
            f"mangle-option: value={self.value!r} does not suit field {self.field} "
            f"({self._allowed(kind)})"
        )
        try:
            if kind is bool:
                if str(self.value).lower() not in ("1", "0", "true", "false", "yes", "no"):
                    raise bad
                self.new_value = str(self.value).lower() in ("1", "true", "yes")
            elif kind is int:
                self.new_value = int(self.value, 0)
                if not 0 <= self.new_value < 1 << FIELD_BITS[self.field]:
                    raise bad
            else:
                self.new_value = kind(self.value)
        except ValueError:
            raise bad from None
        self.option_class, self.attribute = cls, name

    def _allowed(self, kind) -> str:
        if kind is bool:
            return "true or false"
        if kind is int:
            return f"an integer from 0 to {(1 << FIELD_BITS[self.field]) - 1}"
        return "an IP address"

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
