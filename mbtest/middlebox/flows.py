"""Per-flow state a middlebox needs: who opened the flow, and what kind of segment this is."""

from __future__ import annotations

from dataclasses import dataclass, field

from mbtest.packet.edit import TcpPacket

Endpoint = tuple[str, int]
SEGMENT_CLASSES = ("syn", "synack", "third-ack", "data", "all")


@dataclass
class Flow:
    initiator: Endpoint | None = None
    packets: dict[str, int] = field(default_factory=lambda: {"c>s": 0, "s>c": 0, "?": 0})
    third_ack_seen: bool = False
    data_segments: dict[str, int] = field(default_factory=lambda: {"c>s": 0, "s>c": 0, "?": 0})
    state: dict = field(default_factory=dict)  # a behaviour's own per-flow state


@dataclass(frozen=True)
class PacketContext:
    flow_key: frozenset
    flow: Flow
    direction: str  # c>s, s>c, or ? when the SYN was not seen
    classes: frozenset[str]  # syn, synack, third-ack, data, all
    index: int  # 1-based packet number in this direction of the flow
    data_index: int  # 1-based number of this data segment in this direction, 0 if no data

    @property
    def flow_name(self) -> str:
        return self.flow.state.get("name", "?")


class FlowTracker:
    def __init__(self) -> None:
        self.flows: dict[frozenset, Flow] = {}

    def observe(self, pkt: TcpPacket) -> PacketContext:
        src, dst = (pkt.src, pkt.sport), (pkt.dst, pkt.dport)
        key = frozenset((src, dst))
        flow = self.flows.get(key)
        if flow is None or (pkt.syn and not pkt.is_ack and flow.initiator != src):
            flow = self.flows[key] = Flow()
        if pkt.syn and not pkt.is_ack:
            flow.initiator = src
            flow.state["name"] = f"{_fmt(src)} > {_fmt(dst)}"
        elif pkt.syn and flow.initiator is None:  # a SYN/ACK whose SYN went unseen
            flow.initiator = dst
            flow.state["name"] = f"{_fmt(dst)} > {_fmt(src)}"
        direction = "?" if flow.initiator is None else ("c>s" if flow.initiator == src else "s>c")
        if "name" not in flow.state:
            flow.state["name"] = f"{_fmt(src)} > {_fmt(dst)}"
        flow.packets[direction] += 1
        classes = {"all"}
        payload = len(pkt.payload)
        if pkt.syn:
            classes.add("synack" if pkt.is_ack else "syn")
        elif direction == "c>s" and pkt.is_ack and not flow.third_ack_seen:
            flow.third_ack_seen = True
            classes.add("third-ack")
        data_index = 0
        if payload and not pkt.syn:
            classes.add("data")
            flow.data_segments[direction] += 1
            data_index = flow.data_segments[direction]
        return PacketContext(
            key, flow, direction, frozenset(classes), flow.packets[direction], data_index
        )


def _fmt(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
