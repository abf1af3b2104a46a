"""Behaviours that reshape the byte stream: split segments, coalesce them, and rewrite
payload with a change of length (sequence and acknowledgement numbers adjusted as an ALG
does). Original packets are dropped and the reshaped ones injected, in order."""

from __future__ import annotations

import bisect
import time
from dataclasses import dataclass

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
from mbtest.packet.edit import TcpPacket, rewrite_options

OPTIONS_KEPT = ("first", "second", "both")
HTTP = "GET /mptcp/index.html HTTP/1.1\r\nHost: example\r\n\r\n"  # text the rewrite finds


def _without_mptcp(pkt: TcpPacket) -> TcpPacket:
    copy = TcpPacket(bytes(pkt.buf))
    copy.options = rewrite_options(bytes(copy.options), copy.mptcp_spans(), "remove")
    return copy


class Split(Behaviour):
    NAME = "split"
    MODELS = "a middlebox splitting segments (MBClick SegSplit, some proxies and normalisers)"
    DOES = "cuts data segments in two at byte k (or in halves), MPTCP options on either or both"
    EXPECTED = "MPTCP unaffected: mappings cover byte ranges, not segments; data intact"
    RFC = "§3.3.1, §6"
    CELLS = (Cell("split", "mptcp-unaffected"),)
    PARAMS = (
        Param("at", "int", 0, "payload byte to cut at (0: halves)", (), 0, 65535),
        Param("options", "choice", "both", "which part keeps the MPTCP options", OPTIONS_KEPT),
        Param("every", "int", 1, "split every n-th data segment", (), 1, 1 << 30),
        Param("direction", "choice", "c2s", "which direction", DIRECTIONS),
    )

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if (
            not ctx.data_index
            or ctx.data_index % self.every
            or not direction_matches(self.direction, ctx.direction)
        ):
            return ACCEPT
        payload = bytes(pkt.payload)
        cut = self.at or len(payload) // 2
        if not 0 < cut < len(payload):
            return ACCEPT
        first, second = TcpPacket(bytes(pkt.buf)), TcpPacket(bytes(pkt.buf))
        if self.options == "second":
            first = _without_mptcp(first)
        elif self.options == "first":
            second = _without_mptcp(second)
        first.payload = payload[:cut]
        second.payload = payload[cut:]
        second.seq = pkt.seq + cut
        if pkt.fin:  # the FIN belongs to the last byte
            first.buf[first.ip_len + 13] &= ~0x01
        log = change(
            ctx,
            pkt,
            "split",
            len(payload),
            f"{cut}+{len(payload) - cut} (options on {self.options})",
        )
        return Verdict("drop", inject=[first.to_bytes(), second.to_bytes()], changes=[log])


@dataclass
class _Held:
    packet: TcpPacket
    since: float
    ctx: PacketContext
    merged: int = 1


def _mptcp_options(pkt: TcpPacket) -> list[bytes]:
    raw = bytes(pkt.options)
    return [raw[s.start : s.end] for s in pkt.mptcp_spans()]


class Coalesce(Behaviour):
    NAME = "coalesce"
    MODELS = (
        "a middlebox merging consecutive segments (MBClick Coalesce, receive offloads on a proxy)"
    )
    DOES = (
        "holds a data segment briefly and merges the next in-sequence ones into it, keeping "
        "the first's options"
    )
    EXPECTED = "MPTCP unaffected while mappings still cover the bytes; data intact"
    RFC = "§3.3.1, §6"
    CELLS = (
        # as GRO does: only segments whose MPTCP options are the same (one mapping) merge
        Cell("coalesce-within-mapping", "mptcp-unaffected", "max_size=8000,merge=same-options",
             topology="single-path-jumbo"),
        # a naive coalescer keeping the first segment's options for all merged data
        Cell("coalesce-across-mappings", "mptcp-unaffected", "max_size=8000,merge=any",
             topology="single-path-jumbo"),
    )  # fmt: skip
    PARAMS = (
        Param("max_size", "int", 2800, "largest merged payload", (), 2, 65000),
        Param("hold_ms", "float", 5.0, "how long a segment waits for the next", (), 0.1, 1000),
        Param(
            "merge",
            "choice",
            "any",
            "which segments merge: any (the first's options kept "
            "for all), or same-options (as GRO: the data stays inside its mapping)",
            ("any", "same-options"),
        ),
        Param("direction", "choice", "c2s", "which direction", DIRECTIONS),
    )
    TICK = 0.002
    NEEDS_EGRESS_MTU = True  # a merged segment must still fit

    def __init__(self, params=None):
        super().__init__(params)
        self.held: dict[tuple, _Held] = {}

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        key = (ctx.flow_key, ctx.direction)
        held = self.held.get(key)
        wanted = ctx.data_index and direction_matches(self.direction, ctx.direction) and not pkt.fin
        if not wanted:
            if held is None:
                return ACCEPT
            # release what is held before anything else of this flow and direction goes
            del self.held[key]
            out = self._release(held)
            return Verdict("drop", inject=[*out.inject, bytes(pkt.buf)], changes=out.changes)
        if held is None:
            self.held[key] = _Held(pkt, time.monotonic(), ctx)
            return Verdict("drop")
        h = held.packet
        contiguous = (h.seq + len(h.payload)) & 0xFFFFFFFF == pkt.seq
        if self.merge == "same-options" and _mptcp_options(h) != _mptcp_options(pkt):
            contiguous = False  # another mapping: released, not merged
        fits = len(h.buf) + len(pkt.payload) <= self.egress_mtu
        if contiguous and fits and len(h.payload) + len(pkt.payload) <= self.max_size:
            h.payload = bytes(h.payload) + bytes(pkt.payload)
            h.ack = pkt.ack
            h.window = pkt.window
            held.merged += 1
            return Verdict("drop")
        del self.held[key]
        out = self._release(held)
        self.held[key] = _Held(pkt, time.monotonic(), ctx)
        return Verdict("drop", inject=out.inject, changes=out.changes)

    def _release(self, held: _Held) -> Verdict:
        pkt = held.packet
        changes = []
        if held.merged > 1:
            changes.append(
                change(
                    held.ctx, pkt, "coalesce", held.merged, f"1 segment of {len(pkt.payload)} bytes"
                )
            )
        return Verdict("drop", inject=[pkt.to_bytes()], changes=changes)

    def tick(self, now: float) -> Verdict:
        out = Verdict("drop")
        for key, held in list(self.held.items()):
            if now - held.since >= self.hold_ms / 1000:
                del self.held[key]
                released = self._release(held)
                out.inject += released.inject
                out.changes += released.changes
        return out


class _Rewrites:
    """Where a flow direction's bytes moved, as edits kept sorted with running totals, so
    that a segment costs a binary search whatever the flow's history (a long rewritten flow
    must not slow the middlebox down). Sequence numbers are unwrapped into 64-bit positions
    relative to the latest one seen, so flows past 4 GiB stay right."""

    def __init__(self) -> None:
        self.starts: list[int] = []  # original starts, sorted
        self.ends: list[int] = []  # original ends (start + original length)
        self.deltas: list[int] = []  # new length - original length
        self.shift_after: list[int] = []  # the total length change up to and including i
        self.new_ends: list[int] = []  # where edit i ends in the rewritten space
        self._known: set[int] = set()
        self._seq = _Unwrap()

    def __bool__(self) -> bool:
        return bool(self.starts)

    def known(self, seq: int) -> bool:
        """Whether a segment starting at SEQ was rewritten before (a retransmission)."""
        return self._seq.peek(seq) in self._known

    def add(self, seq: int, old: int, new: int) -> None:
        start = self._seq.unwrap(seq)
        self._known.add(start)
        at = bisect.bisect_right(self.starts, start)
        self.starts.insert(at, start)
        self.ends.insert(at, start + old)
        self.deltas.insert(at, new - old)
        self.shift_after.insert(at, 0)
        self.new_ends.insert(at, 0)
        for i in range(at, len(self.starts)):  # only the last one when segments come in order
            self.shift_after[i] = (self.shift_after[i - 1] if i else 0) + self.deltas[i]
            self.new_ends[i] = self.ends[i] + self.shift_after[i]

    def shift_before(self, seq: int) -> int:
        """How far an original sequence number moved (edits wholly before it)."""
        k = bisect.bisect_right(self.ends, self._seq.unwrap(seq))
        return self.shift_after[k - 1] if k else 0

    def unshift_ack(self, ack: int) -> int:
        """An acknowledgement in the rewritten space, back in the original space."""
        k = bisect.bisect_right(self.new_ends, self._seq.peek(ack))
        return (ack - (self.shift_after[k - 1] if k else 0)) & 0xFFFFFFFF


class _Unwrap:
    """32-bit sequence numbers as 64-bit positions, relative to the latest one seen."""

    def __init__(self) -> None:
        self.last: int | None = None

    def peek(self, value: int) -> int:
        if self.last is None:
            return value
        delta = (value - self.last) & 0xFFFFFFFF
        return self.last + (delta - (1 << 32) if delta >= 1 << 31 else delta)

    def unwrap(self, value: int) -> int:
        position = self.peek(value)
        self.last = position if self.last is None else max(self.last, position)
        return position


class PayloadRewrite(Behaviour):
    NAME = "payload-rewrite"
    MODELS = (
        "a content-rewriting proxy or ALG changing payload and its length (HTTP header rewriting)"
    )
    DOES = (
        "replaces text in the payload (the length may change) and shifts later sequence "
        "numbers and the peer's acknowledgements accordingly"
    )
    EXPECTED = "with checksums: MP_FAIL and fallback; without: the mapping no longer matches"
    RFC = "§3.3.1, §3.7"
    CELLS = tuple(
        Cell(
            f"payload-rewrite-{tag}",
            f"length-change-{tag}",
            "find=mptcp,replace=mp,segment=20",
            checksums=tag == "csum",
            # With checksums and data both ways, whether Linux's fallback survives depends on
            # what the client had queued when MP_FAIL came (a race: one run in four); one way,
            # the client stalls after MP_FAIL in every run. Without checksums, one way makes
            # the outcome (MPTCP continues, or falls back) a race instead: both ways there.
            conditions={"text": HTTP, "s2c_bytes": 0} if tag == "csum" else {"text": HTTP},
        )
        for tag in ("csum", "nocsum")
    )
    BOTH_WAYS = True  # the peer's acknowledgements are translated back
    PARAMS = (
        Param("find", "str", "mptcp", "the text to replace", minimum=1),
        Param("replace", "str", "MultipathTCP", "what to put instead"),
        Param("direction", "choice", "c2s", "which direction", DIRECTIONS),
        Param(
            "segment",
            "int",
            0,
            "rewrite only this data segment (1-based; 0: every one holding the text)",
            (),
            0,
            1 << 30,
        ),
    )

    NEEDS_EGRESS_MTU = True  # a rewrite that would not fit is not made

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:
        if ctx.direction == "?":
            return ACCEPT
        rewrites = ctx.flow.state.setdefault("rewrites", {"c>s": _Rewrites(), "s>c": _Rewrites()})
        own, other = rewrites[ctx.direction], rewrites["s>c" if ctx.direction == "c>s" else "c>s"]
        changes = []
        original_seq = pkt.seq
        payload = bytes(pkt.payload)
        find, replace = self.find.encode(), self.replace.encode()
        known = own.known(original_seq)  # a retransmission
        wanted = not self.segment or ctx.data_index == self.segment or known
        new_payload = payload.replace(find, replace) if wanted and find in payload else payload
        fits = len(pkt.buf) + len(new_payload) - len(payload) <= self.egress_mtu
        if new_payload != payload and fits and direction_matches(self.direction, ctx.direction):
            if not known:
                own.add(original_seq, len(payload), len(new_payload))
            pkt.payload = new_payload
            changes.append(change(ctx, pkt, "payload (rewrite)", payload, new_payload))
        shift = own.shift_before(original_seq)
        if shift:
            pkt.seq = original_seq + shift
            changes.append(change(ctx, pkt, "tcp.seq", original_seq, pkt.seq))
        if pkt.is_ack and other:
            ack = other.unshift_ack(pkt.ack)
            if ack != pkt.ack:
                changes.append(change(ctx, pkt, "tcp.ack", pkt.ack, ack))
                pkt.ack = ack
        if not changes:
            return ACCEPT
        for entry in changes:
            entry["seq"] = original_seq
        return Verdict("modified", pkt.to_bytes(), changes=changes)
