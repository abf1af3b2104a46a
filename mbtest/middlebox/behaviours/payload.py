"""Payload corruption that keeps the TCP checksum valid (what the DSS checksum is for)."""

from __future__ import annotations

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
from mbtest.packet.edit import TcpPacket


class PayloadFlip(Behaviour):
    NAME = "payload-flip"
    MODELS = "a middlebox corrupting payload while keeping the TCP checksum valid"
    DOES = "inverts payload bytes of chosen data segments and fixes the TCP checksum"
    EXPECTED = (
        "with checksums: MP_FAIL and fallback (one subflow) or RST (several); without: changed data"
    )
    RFC = "§3.7"
    CELLS = (
        Cell("payload-flip-c2s-csum", "payload-csum-single", "segment=20,direction=c2s",
             checksums=True),
        Cell("payload-flip-s2c-csum", "payload-csum-single", "segment=20,direction=s2c",
             checksums=True),
        Cell("payload-flip-two-subflows-csum", "payload-csum-multi", "segment=20",
             topology="dual-path", slot="slota", checksums=True),
        Cell("payload-flip-c2s-nocsum", "payload-undetected", "segment=20,direction=c2s"),
        Cell("payload-flip-s2c-nocsum", "payload-undetected", "segment=20,direction=s2c"),
        Cell("payload-flip-two-subflows-nocsum", "payload-undetected", "segment=20",
             topology="dual-path", slot="slota"),
    )  # fmt: skip
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
            "--every",
            str(self.every),
            "--segment",
            str(self.segment),
            "--offset",
            str(self.offset),
            "--count",
            str(self.count),
            "--direction",
            self.direction,
        ]

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
