"""What a middlebox did, seen from outside: the difference between the captures on the two
sides of its slot. Packets are paired by direction, sequence and acknowledgement numbers,
flags and payload length (which NAT, option rewriting and payload flips all keep).
This is what a middlebox's ground-truth log is checked against.
"""

from __future__ import annotations

import os
from collections import defaultdict, deque
from typing import Any

from mbtest.observe.decode import PacketRecord, decode_capture


def _records(path: str | os.PathLike) -> list[PacketRecord]:
    return [r for r in decode_capture(path, only_mptcp=False, keep_segments=True) if r.segment]


def _key(r: PacketRecord) -> tuple:
    return (r.direction, r.seq, r.ack, r.tcp_flags, r.payload_length)


def _endpoint(endpoint: tuple[str, int]) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def diff(client_side: str | os.PathLike, server_side: str | os.PathLike) -> list[dict[str, Any]]:
    """Every change between the two sides: changed fields, dropped and injected packets."""
    sides = {"client": _records(client_side), "server": _records(server_side)}
    changes: list[dict[str, Any]] = []
    for direction, ingress, egress in (("c>s", "client", "server"), ("s>c", "server", "client")):
        out_by_key: dict[tuple, deque[PacketRecord]] = defaultdict(deque)
        for r in sides[egress]:
            if r.direction == direction:
                out_by_key[_key(r)].append(r)
        pairs: list[tuple[PacketRecord, PacketRecord | None]] = []
        pending: list[PacketRecord] = []
        for r in sides[ingress]:  # first the packets that went through unchanged
            if r.direction != direction:
                continue
            queue = out_by_key.get(_key(r), deque())
            same = next((o for o in queue if _same(r, o)), None)
            if same is None:
                pending.append(r)
            else:
                queue.remove(same)
        unpaired: list[PacketRecord] = []
        for r in pending:  # then the changed ones with the same numbers, in order
            queue = out_by_key.get(_key(r))
            if queue:
                pairs.append((r, queue.popleft()))
            else:
                unpaired.append(r)
        loose: dict[tuple, deque[PacketRecord]] = defaultdict(deque)
        for queue in out_by_key.values():  # then those whose numbers changed (seq rewriting)
            for o in queue:
                loose[_loose_key(o)].append(o)
            queue.clear()
        for r in unpaired:  # prefer the one alike in all but numbers, else the next in order
            queue = loose.get(_loose_key(r))
            match = next((o for o in queue if _rest(o) == _rest(r)), None) if queue else None
            if match is None and queue:
                match = queue[0]
            if match is not None:
                queue.remove(match)
            pairs.append((r, match))
        for r, out in sorted(pairs, key=lambda p: p[0].frame):
            if out is None:
                changes.append(_entry(r, "dropped", r.tcp_flags, None))
                continue
            a, b = r.segment, out.segment
            for kind, before, after in (
                ("tcp.seq", a.seq, b.seq),
                ("tcp.ack", a.ack, b.ack),
                ("tcp.window", a.window, b.window),
                ("ip.id", a.ip_id, b.ip_id),
                ("tcp.options", a.options_raw.hex(), b.options_raw.hex()),
                ("payload", a.payload.hex(), b.payload.hex()),
                ("source", _endpoint(r.src), _endpoint(out.src)),
                ("destination", _endpoint(r.dst), _endpoint(out.dst)),
            ):
                if before != after:
                    changes.append(_entry(r, kind, before, after))
        out_by_key = loose
        for queue in out_by_key.values():
            for r in queue:
                changes.append(_entry(r, "injected", None, r.tcp_flags))
    return changes


def _loose_key(r: PacketRecord) -> tuple:
    return (r.direction, r.tcp_flags, r.payload_length)


def _rest(r: PacketRecord) -> tuple:
    """What sequence rewriting keeps (SACK blocks shift, so only the options' length)."""
    s = r.segment
    return (s.window, len(s.options_raw), s.payload)


def _fields(r: PacketRecord) -> tuple:
    s = r.segment
    return (r.src, r.dst, s.seq, s.ack, s.window, s.ip_id, s.options_raw, s.payload)


def _same(a: PacketRecord, b: PacketRecord) -> bool:
    return _fields(a) == _fields(b)


def _entry(r: PacketRecord, kind: str, before: Any, after: Any) -> dict[str, Any]:
    return {
        "direction": r.direction,
        "seq": r.seq,
        "flow": r.flow,
        "kind": kind,
        "before": before,
        "after": after,
    }


def log_kind(entry: dict[str, Any]) -> str:
    """The capture-diff kind a ground-truth log entry corresponds to."""
    field = entry.get("field", "")
    if field.startswith("tcp.options") or ("." in field and field.split(".")[0].isupper()):
        return "tcp.options"
    if field.startswith("payload"):
        return "payload"
    if field == "packet" and entry.get("after") == "dropped":
        return "dropped"
    if field == "injected":
        return "injected"
    return field
