"""Facts only the packets can tell: whether a segment carried data beyond the mapping it
carries (a coalescer merging across a mapping boundary), which packets a middlebox removed
options from, and where infinite mappings were sent. Pure functions over decoded captures
and log entries."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mbtest.mptcp.options import Dss, MpCapable
from mbtest.observe.decode import PacketRecord

MASK32 = 0xFFFFFFFF


@dataclass(frozen=True)
class Crossing:
    """A data segment whose bytes run past the mapping it carries."""

    frame: int
    flow: str
    start: int  # relative subflow sequence number of its first byte
    length: int
    mapping_start: int
    mapping_length: int

    def text(self, capture: str) -> str:
        return (
            f"{capture} frame {self.frame} ({self.flow}): bytes {self.start}-"
            f"{self.start + self.length - 1} carry the mapping of {self.mapping_start}-"
            f"{self.mapping_start + self.mapping_length - 1}"
        )


def crossings(records: list[PacketRecord], direction: str) -> list[Crossing]:
    """Data segments (in one direction) carrying a mapping that does not cover all their
    bytes. Split segments stay inside their mapping; a coalescer that keeps the first
    segment's DSS for merged data does not."""
    isn: dict[frozenset, int] = {}
    out = []
    for r in records:
        seg = r.segment
        if seg is None or r.direction != direction:
            continue
        key = frozenset((r.src, r.dst))
        if seg.syn:
            isn[key] = seg.seq
            continue
        if not seg.payload or key not in isn:
            continue
        start = (seg.seq - isn[key]) & MASK32
        for mapping in _mappings(r):
            ssn, length = mapping
            if not ssn <= start or start + len(seg.payload) > ssn + length:
                out.append(Crossing(r.frame, r.flow, start, len(seg.payload), ssn, length))
    return out


def _mappings(r: PacketRecord) -> list[tuple[int, int]]:
    """(subflow sequence number, length) of the finite mappings a packet carries."""
    out = []
    for option in r.options:
        if isinstance(option, Dss) and option.has_mapping and option.data_length:
            length = option.data_length - (1 if option.data_fin else 0)
            if length > 0:
                out.append((option.subflow_seq, length))
        elif isinstance(option, MpCapable) and option.data_length:  # v1 first data
            out.append((1, option.data_length))
    return out


def infinite_mappings(records: list[PacketRecord]) -> dict[str, list[int]]:
    """Frames carrying an infinite mapping, by direction, in one capture."""
    out: dict[str, list[int]] = {"c>s": [], "s>c": []}
    for r in records:
        if any(isinstance(o, Dss) and o.infinite_mapping for o in r.options):
            out.setdefault(r.direction, []).append(r.frame)
    return out


def packet_kind(entry: dict[str, Any]) -> str:
    """How a log entry's packet is named in facts: its place in the connection and content."""
    segment = set(entry.get("segment", []))
    flags = int(entry.get("flags", 0) or 0)
    if "syn" in segment or (flags & 0x12) == 0x02:
        return "SYN"
    if "synack" in segment or (flags & 0x12) == 0x12:
        return "SYN/ACK"
    content = "data" if entry.get("payload") else "pure ACK"
    if "first" in segment:
        return f"first packet after the handshake ({content})"
    return content


def removals(log: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The log entries where a middlebox removed options (stripped, NOPed, cut by EOL)."""
    return [
        e for e in log if str(e.get("field", "")).startswith("tcp.options (") and "removed" in e
    ]
