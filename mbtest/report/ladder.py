"""Packet ladder diagrams (inline SVG) of a connection as the client and the server saw it,
with the middlebox between them: each packet's flags and MPTCP options, options that
vanished on the way highlighted, MP_FAIL, infinite mappings and resets marked."""

from __future__ import annotations

from html import escape
from typing import Any

from mbtest import jsondoc

WIDTH, ROW, TOP = 760, 22, 40
COLUMNS = {"client": 90, "middlebox": 380, "server": 670}
MAX_ROWS = 60


def _events(timeline: dict[str, Any], side: str) -> list[dict[str, Any]]:
    out = []
    for sub in timeline.get("subflows", []):
        if sub.get("kind") == "tcp" and not sub.get("mptcp_packets") and not sub.get("resets"):
            continue
        for event in sub.get("events", []):
            out.append({**event, "side": side, "subflow": sub.get("kind", "?")})
    return out


def _style(event: dict[str, Any], vanished: bool) -> str:
    names = " ".join(event.get("options", []))
    if "R" in event.get("flags", "") or "MpFail" in names or "infinite" in names:
        return "alarm"
    return "vanished" if vanished else "normal"


def ladder_svg(client_timeline: dict[str, Any], server_timeline: dict[str, Any]) -> str:
    """An SVG ladder from the two endpoint captures' timelines (empty string if no events)."""
    events = _events(client_timeline, "client") + _events(server_timeline, "server")
    events.sort(key=lambda e: jsondoc.epoch(e.get("time")) or 0.0)
    if not events:
        return ""
    shown = events[:MAX_ROWS]
    # Options that one side sent but the other side never saw, by direction and flags.
    seen: dict[tuple, set[str]] = {}
    for e in events:
        seen.setdefault((e["side"], e["direction"], e["flags"]), set()).update(e.get("options", []))
    height = TOP + ROW * (len(shown) + 1)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="ladder" width="{WIDTH}" height="{height}" '
        f'viewBox="0 0 {WIDTH} {height}" role="img" aria-label="packet ladder">'
    ]
    for name, x in COLUMNS.items():
        parts.append(f'<text x="{x}" y="16" text-anchor="middle" class="actor">{name}</text>')
        parts.append(f'<line x1="{x}" y1="24" x2="{x}" y2="{height - 6}" class="life"/>')
    for row, e in enumerate(shown):
        y = TOP + ROW * row
        c2s = e["direction"] == "c>s"
        near, far = ("client", "middlebox") if e["side"] == "client" else ("middlebox", "server")
        x1, x2 = (COLUMNS[near], COLUMNS[far]) if c2s else (COLUMNS[far], COLUMNS[near])
        other = "server" if e["side"] == "client" else "client"
        sent_side = (e["side"] == "client") == c2s  # this capture is the sender's
        theirs = seen.get((other, e["direction"], e["flags"]), set())
        vanished = sent_side and bool(set(e.get("options", [])) - theirs)
        style = _style(e, vanished)
        label = f"{e['flags'] or '.'} {' '.join(e.get('options', [])) or '-'}"
        if e.get("subflow") == "join":
            label += " (join)"
        arrow = f'<line x1="{x1}" y1="{y}" x2="{x2}" y2="{y}" class="arrow {style}"'
        parts.append(arrow + ' marker-end="url(#head)"/>')
        text = f'<text x="{(x1 + x2) / 2}" y="{y - 4}" text-anchor="middle"'
        parts.append(f'{text} class="label {style}">{escape(label)}</text>')
    if len(events) > MAX_ROWS:
        parts.append(
            f'<text x="{WIDTH / 2}" y="{height - 4}" text-anchor="middle" class="more">'
            f"{len(events) - MAX_ROWS} more packets not drawn</text>"
        )
    marker = '<marker id="head" markerWidth="8" markerHeight="8" refX="7" refY="4" orient="auto">'
    parts.insert(1, f'<defs>{marker}<path d="M0,0 L8,4 L0,8 z" class="head"/></marker></defs>')
    parts.append("</svg>")
    return "".join(parts)
