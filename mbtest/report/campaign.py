"""A campaign's results (``mbtest probe --targets``, a line per target) summed up for the
report: counts by outcome, which fields the paths change and at which hop, one compact row
per target, and the full documents of a bounded number of interesting targets only, so
that a page for 10,000 targets stays light and the reading never holds them all in memory.

Every function here reads documents from outside: any shape is tolerated (a value of the
wrong type counts as absent) and every string kept is cut to a bounded length."""

from __future__ import annotations

import heapq
import itertools
from collections import Counter
from collections.abc import Iterable
from typing import Any

from mbtest.jsondoc import CAMPAIGN_OUTCOMES

OUTCOMES = CAMPAIGN_OUTCOMES
INTERESTING = ("changed", "not-observable", "error")  # shown first, with full sections
UNREADABLE = "unreadable"  # a line of the file that is no usable result
DETAILED = 200  # full sections at most: each can weigh tens of kilobytes
TOP = 30  # rows at most in each summary table (a hostile file may hold any number of keys)
TEXT = 160  # characters kept of any string from a document


def _text(value: Any, limit: int = TEXT) -> str | None:
    if not isinstance(value, str) or not value:
        return None
    return value if len(value) <= limit else value[: limit - 1] + "…"


def _int(value: Any) -> int | None:
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _dict(value: Any) -> dict[str, Any]:
    return value if isinstance(value, dict) else {}


def _list(value: Any) -> list[Any]:
    return value if isinstance(value, list) else []


def _number(value: Any) -> float | int | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value != value:
        return None
    return value


def rank(outcome: str) -> int:
    """The row order: interesting outcomes first (changed, not-observable, error), then
    words this version does not know and unreadable lines, then the quiet outcomes."""
    if outcome in INTERESTING:
        return INTERESTING.index(outcome)
    if outcome == UNREADABLE:
        return len(INTERESTING) + 1
    if outcome not in OUTCOMES:
        return len(INTERESTING)
    return len(INTERESTING) + 2 + OUTCOMES.index(outcome)


def interesting(outcome: str) -> bool:
    return rank(outcome) <= len(INTERESTING) + 1


def target_row(doc: Any, index: int) -> dict[str, Any]:
    """One target's row, from its line (a probe document with its ``campaign`` part, or a
    campaign line for a target that could not be probed): where the path first changed a
    probe (the lowest TTL of the ``first`` changes of every probe's hops), which fields,
    how far the destination was, and what hid part of the path."""
    doc = _dict(doc)
    part = _dict(doc.get("campaign"))
    target = _dict(doc.get("target"))
    line = _int(part.get("line"))
    name = _text(part.get("target"), 200) or _text(target.get("name"), 200)
    outcome = _text(part.get("outcome"), 40) or "unknown"
    probes = [p for p in _list(doc.get("probes")) if isinstance(p, dict)]
    firsts: list[tuple[int, str | None, str | None, int | None]] = []
    reached: list[int] = []
    hidden: dict[str, int | None] = {}
    error = _text(doc.get("error"))
    served: list[str] = []  # changes only a cooperating server saw (either way)
    for probe in probes:
        dest = _dict(probe.get("destination"))
        dest_ttl = _int(dest.get("ttl"))
        if dest.get("reached") is True and dest_ttl is not None:
            reached.append(dest_ttl)
        own = []
        for hop in _list(probe.get("hops")):
            ttl = _int(_dict(hop).get("ttl"))
            for change in _list(_dict(hop).get("changes")) if ttl is not None else []:
                if isinstance(change, dict) and change.get("first") is True:
                    field = _text(change.get("field"), 80) or "?"
                    own.append((ttl, field, _text(change.get("text")), dest_ttl))
        first = _dict(probe.get("first_change"))
        if not own and _int(first.get("ttl")) is not None:  # no hop marked: its TTL still
            texts = _list(first.get("changes"))
            own.append((first["ttl"], None, _text(texts[0]) if texts else None, dest_ttl))
        firsts += own
        seen = _dict(probe.get("observability"))
        if seen.get("complete") is False:
            for gap in _list(seen.get("hidden")):
                label = _text(_dict(gap).get("fields"), 60) or "?"
                after = _int(_dict(gap).get("to_ttl"))
                if label not in hidden or (after is not None and after < (hidden[label] or 0)):
                    hidden[label] = after
        if error is None and not probe.get("setup_failed"):
            error = _text(probe.get("error"))
        served += _server_changes(probe.get("server"))
    ttl = min((f[0] for f in firsts), default=None)
    at_first = [f for f in firsts if f[0] == ttl]
    dest_ttl = next((f[3] for f in at_first if f[3] is not None), None)
    if dest_ttl is None and reached:
        dest_ttl = min(reached)
    note = None
    if outcome == "not-observable" and hidden:
        note = "hidden: " + "; ".join(
            f"{label} after hop {after}" if after is not None else label
            for label, after in itertools.islice(hidden.items(), 3)
        )
    if error:
        note = error if note is None else f"{note}; {error}"
    return {
        "index": index,
        "target": name or (f"targets line {line}" if line is not None else "?"),
        "port": _int(part.get("port")) or _int(target.get("port")),
        "outcome": outcome,
        "rank": rank(outcome),
        "interesting": interesting(outcome),
        "ttl": ttl,
        "fields": sorted({f[1] for f in at_first if f[1]}),
        "all_fields": sorted({f[1] for f in firsts if f[1]}),
        "texts": list(dict.fromkeys(f[2] for f in at_first if f[2]))[:2],
        "served": list(dict.fromkeys(served))[:2] if ttl is None else [],
        "dest_ttl": dest_ttl,
        "before_dest": dest_ttl - ttl if dest_ttl is not None and ttl is not None else None,
        "hidden": sorted(hidden),
        "ecmp": bool(_list(doc.get("path_differs"))),
        "note": note,
        "workers": _int(part.get("workers")),
        "pps": _number(part.get("pps")),
        "anchor": None,
    }


def _server_changes(server: Any) -> list[str]:
    """The texts of the changes a cooperating server saw: on the way there, on the way
    back, and in what it sent back crafted from the probe."""
    server = _dict(server)
    back, crafted = _dict(server.get("back")), _dict(server.get("crafted"))
    found = (
        _list(server.get("forward")) + _list(back.get("changes")) + _list(crafted.get("changes"))
    )
    return [t for t in (_text(_dict(c).get("text")) for c in found) if t]


def unreadable_row(where: str, why: str, index: int, part: Any = None) -> dict[str, Any]:
    """The row of a line that holds no usable result: it is reported, never skipped."""
    row = target_row({"campaign": _dict(part)}, index)
    row.update(outcome=UNREADABLE, rank=rank(UNREADABLE), interesting=True, note=_text(why))
    if row["target"] == "?":
        row["target"] = _text(where, 300)
    else:
        row["note"] = _text(f"{where}: {why}", 300)
    return row


class Collector:
    """The rows of every target as they are read, and the whole documents of only the
    ``detailed`` interesting targets that come first in the table's order."""

    def __init__(self, detailed: int = DETAILED):
        self.detailed = detailed
        self.rows: list[dict[str, Any]] = []
        self._kept: list[tuple[int, int, dict[str, Any]]] = []  # a heap: the worst on top
        self.first: dict[str, Any] = {}  # what the first probed target's run was

    def add(self, doc: Any) -> dict[str, Any]:
        row = target_row(doc, len(self.rows))
        self.rows.append(row)
        if not self.first and isinstance(doc, dict) and _text(doc.get("command")):
            started = doc.get("started")
            self.first = {
                "command": _text(doc.get("command"), 500),
                "started": _text(started, 60) if isinstance(started, str) else _number(started),
                "source": _text(doc.get("source"), 100),
            }
        if row["interesting"] and isinstance(doc, dict) and self.detailed > 0:
            entry = (-row["rank"], -row["index"], doc)
            if len(self._kept) < self.detailed:
                heapq.heappush(self._kept, entry)
            elif entry[:2] > self._kept[0][:2]:  # comes before the last one kept
                heapq.heapreplace(self._kept, entry)
        return row

    def add_unreadable(self, where: str, why: str, part: Any = None) -> None:
        self.rows.append(unreadable_row(where, why, len(self.rows), part))

    def kept(self) -> list[tuple[dict[str, Any], dict[str, Any]]]:
        """(row, document) of the targets shown in full, in table order."""
        chosen = sorted(((-r, -i), doc) for r, i, doc in self._kept)  # (rank, index) unique
        return [(self.rows[index], doc) for (_, index), doc in chosen]


def summarise(rows: list[dict[str, Any]], detailed: int = 0) -> dict[str, Any]:
    """The campaign's summary from its rows: counts by outcome (known outcomes in their
    order, other words after), workers and pps, how many targets each field was first
    changed for, and the first-change hop and its distance before the destination."""
    total = len(rows)
    outcomes = Counter(r["outcome"] for r in rows)
    words = list(OUTCOMES) + sorted(set(outcomes) - set(OUTCOMES), key=lambda w: (-outcomes[w], w))
    changed = [r for r in rows if r["ttl"] is not None]
    fields = Counter(f for r in rows for f in r["all_fields"])
    texts = Counter(t for r in rows for t in r["texts"])
    hidden = Counter(h for r in rows for h in r["hidden"])
    marked = [r for r in rows if r["interesting"] and r["outcome"] != UNREADABLE]
    return {
        "targets": total,
        "outcomes": [
            {"outcome": w, "count": outcomes[w], "percent": _percent(outcomes[w], total)}
            for w in words
        ],
        "workers": sorted({r["workers"] for r in rows if r["workers"] is not None}),
        "pps": sorted({r["pps"] for r in rows if r["pps"] is not None}),
        "changed_located": len(changed),
        "changed_unlocated": sum(1 for r in rows if r["outcome"] == "changed" and r["ttl"] is None),
        "fields": _table(fields, total),
        "texts": _table(texts, total),
        "hidden": _table(hidden, total),
        "first_ttl": _by_number(Counter(r["ttl"] for r in changed)),
        "before_dest": _by_number(
            Counter(r["before_dest"] for r in changed if r["before_dest"] is not None)
        ),
        "ecmp": sum(1 for r in rows if r["ecmp"]),
        "interesting": len(marked),
        "detailed": min(detailed, len(marked)),
        "left_out": max(0, len(marked) - detailed),
    }


def order(rows: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The table's rows: interesting targets first, each outcome together, file order."""
    return sorted(rows, key=lambda r: (r["rank"], r["index"]))


def summary_of(docs: Iterable[Any], detailed: int = DETAILED) -> dict[str, Any]:
    """The summary of a campaign's documents, read one by one."""
    collector = Collector(detailed)
    for doc in docs:
        collector.add(doc)
    return summarise(collector.rows, len(collector.kept()))


def _percent(count: int, total: int) -> str:
    return f"{100 * count / total:.1f}%" if total else "-"


def _table(counts: Counter, total: int) -> dict[str, Any]:
    """The most frequent keys first, at most TOP of them, and how many were left out."""
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))
    return {
        "rows": [(k, n, _percent(n, total)) for k, n in top[:TOP]],
        "more": max(0, len(top) - TOP),
    }


def _by_number(counts: Counter) -> dict[str, Any]:
    """Hop numbers in order, at most TOP of them (the most frequent when there are more)."""
    top = sorted(counts.items(), key=lambda kv: (-kv[1], kv[0]))[:TOP]
    return {"rows": sorted(top), "more": max(0, len(counts) - TOP)}
