"""Per-connection timelines from a decoded capture: which MPTCP options appeared on which
packet, where they stopped appearing, and which resets carried which MP_TCPRST reason."""

from __future__ import annotations

import os
from typing import Any

from mbtest.mptcp import crypto
from mbtest.mptcp.options import Dss, MpCapable, MpJoinSyn, MpTcpRst
from mbtest.observe.decode import PacketRecord, capture_records


def _names(record: PacketRecord) -> list[str]:
    names = []
    for o in record.options:
        name = o.name
        if isinstance(o, Dss) and o.infinite_mapping:
            name = "Dss(infinite)"
        names.append(name)
    return names


def build(records: list[PacketRecord]) -> dict[str, Any]:
    """Subflows (4-tuples) grouped into MPTCP connections by their keys and tokens."""
    subflows: dict[frozenset, dict[str, Any]] = {}
    last_names: dict[tuple[frozenset, str], list[str]] = {}
    token_owner: dict[int, int] = {}  # token -> connection number
    connections: list[dict[str, Any]] = []
    for r in records:
        if r.errors and r.src == ("?", 0):
            continue
        key = frozenset((r.src, r.dst))
        sub = subflows.get(key)
        if sub is None:
            sub = subflows[key] = {
                "flow": r.flow,
                "kind": "tcp",
                "connection": None,
                "first_frame": r.frame,
                "packets": 0,
                "mptcp_packets": 0,
                "last_mptcp_frame": {},
                "plain_after_mptcp": {},
                "events": [],
                "resets": [],
                "malformed": [],
            }
        sub["packets"] += 1
        names = _names(r)
        direction = r.direction
        for o in r.options:
            if (
                isinstance(o, MpCapable)
                and o.receiver_key is not None
                and sub["connection"] is None
            ):
                number = len(connections)
                tokens = [crypto.token(o.sender_key), crypto.token(o.receiver_key)]
                connections.append(
                    {"number": number, "tokens": [f"{t:08x}" for t in tokens], "subflows": []}
                )
                for t in tokens:
                    token_owner[t] = number
                sub["connection"], sub["kind"] = number, "initial"
            elif isinstance(o, MpCapable) and sub["kind"] == "tcp":
                sub["kind"] = "mp_capable-attempt"
            elif isinstance(o, MpJoinSyn):
                sub["kind"] = "join"
                sub["connection"] = token_owner.get(o.token)
                sub["join_token"] = f"{o.token:08x}"
        if names:
            sub["mptcp_packets"] += 1
            sub["last_mptcp_frame"][direction] = r.frame
            sub["plain_after_mptcp"][direction] = 0
        elif direction in sub["last_mptcp_frame"]:
            sub["plain_after_mptcp"][direction] += 1
        if r.tcp_flags and "R" in r.tcp_flags:
            reason = next((o for o in r.options if isinstance(o, MpTcpRst)), None)
            sub["resets"].append(
                {
                    "frame": r.frame,
                    "direction": direction,
                    "mp_tcprst": None if reason is None else reason.reason_name,
                    "transient": None if reason is None else reason.transient,
                }
            )
        if r.errors:
            sub["malformed"].append({"frame": r.frame, "errors": r.errors})
        changed = names != last_names.get((key, direction))
        if changed or any(f in r.tcp_flags for f in "SFR"):
            sub["events"].append(
                {
                    "frame": r.frame,
                    "time": round(r.time, 6),
                    "direction": direction,
                    "flags": r.tcp_flags,
                    "options": names,
                }
            )
            last_names[(key, direction)] = names
    for sub in subflows.values():
        if sub["connection"] is not None:
            connections[sub["connection"]]["subflows"].append(sub["flow"])
    return {"connections": connections, "subflows": list(subflows.values())}


def from_capture(path: str | os.PathLike) -> dict[str, Any]:
    return build(capture_records(path))
