"""Per-flow state a middlebox needs: who opened the flow, and what kind of segment this is."""

from __future__ import annotations

import itertools
from dataclasses import dataclass, field

from mbtest.packet.edit import TcpPacket

# "first": the first packet of a direction after the handshake (the client's third ACK, the
# server's first packet after its SYN/ACK): Linux wants DSS or MP_CAPABLE on it.
SEGMENT_CLASSES = ("syn", "synack", "third-ack", "first", "data", "all")


@dataclass
class Flow:
    initiator: bytes | None = None  # the opener's raw address and port
    packets: dict[str, int] = field(default_factory=lambda: {"c>s": 0, "s>c": 0, "?": 0})
    third_ack_seen: bool = False
    established: dict[str, bool] = field(
        default_factory=lambda: {"c>s": False, "s>c": False, "?": False}
    )
    data_segments: dict[str, int] = field(default_factory=lambda: {"c>s": 0, "s>c": 0, "?": 0})
    state: dict = field(default_factory=dict)  # a behaviour's own per-flow state


@dataclass(frozen=True)
class PacketContext:
    flow_key: tuple[bytes, bytes]
    flow: Flow
    direction: str  # c>s, s>c, or ? when the SYN was not seen
    classes: frozenset[str]  # syn, synack, third-ack, data, all
    index: int  # 1-based packet number in this direction of the flow
    data_index: int  # 1-based number of this data segment in this direction, 0 if no data

    @property
    def flow_name(self) -> str:
        return self.flow.state.get("name", "?")


_NAMES = ("syn", "synack", "third-ack", "first", "data")
_CLASSES = {  # (syn, synack, third-ack, first, data) -> the classes, made once
    bits: frozenset({"all"} | {name for name, on in zip(_NAMES, bits, strict=True) if on})
    for bits in itertools.product((False, True), repeat=len(_NAMES))
}


class FlowTracker:
    """Flows keyed by raw address and port bytes: the per-packet path formats nothing."""

    def __init__(self) -> None:
        self.flows: dict[tuple[bytes, bytes], Flow] = {}

    def lookup(self, pkt: TcpPacket) -> tuple[Flow | None, str]:
        """The flow a packet belongs to and its direction, without counting it."""
        src, dst = pkt.endpoints()
        flow = self.flows.get((src, dst) if src < dst else (dst, src))
        if flow is None or flow.initiator is None:
            return flow, "?"
        return flow, "c>s" if flow.initiator == src else "s>c"

    def observe(self, pkt: TcpPacket) -> PacketContext:
        src, dst = pkt.endpoints()
        key = (src, dst) if src < dst else (dst, src)
        flags = pkt.flags
        syn, ack = bool(flags & 0x02), bool(flags & 0x10)
        flow = self.flows.get(key)
        if flow is None or (syn and not ack and flow.initiator != src):
            flow = self.flows[key] = Flow()
        if syn and not ack:
            flow.initiator = src
            flow.state["name"] = f"{_fmt(pkt.src, pkt.sport)} > {_fmt(pkt.dst, pkt.dport)}"
        elif syn and flow.initiator is None:  # a SYN/ACK whose SYN went unseen
            flow.initiator = dst
            flow.state["name"] = f"{_fmt(pkt.dst, pkt.dport)} > {_fmt(pkt.src, pkt.sport)}"
        direction = "?" if flow.initiator is None else ("c>s" if flow.initiator == src else "s>c")
        if "name" not in flow.state:
            flow.state["name"] = f"{_fmt(pkt.src, pkt.sport)} > {_fmt(pkt.dst, pkt.dport)}"
        flow.packets[direction] += 1
        third = False
        if not syn and ack and direction == "c>s" and not flow.third_ack_seen:
            flow.third_ack_seen = third = True
        first = False
        if not syn and not flow.established[direction]:
            flow.established[direction] = first = True
        data_index = 0
        data = not syn and pkt.payload_length > 0
        if data:
            flow.data_segments[direction] += 1
            data_index = flow.data_segments[direction]
        classes = _CLASSES[(syn and not ack, syn and ack, third, first, data)]
        return PacketContext(key, flow, direction, classes, flow.packets[direction], data_index)


def _fmt(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
