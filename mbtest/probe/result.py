"""Pure: a swept probe turned into its result: hops with their changes, the first hop that
shows each change, and the destination's answer apart from what the path did."""

from __future__ import annotations

from typing import Any

from mbtest.errors import FINDINGS, HARNESS, OK
from mbtest.jsondoc import schema
from mbtest.mptcp.options import KIND as MPTCP_KIND
from mbtest.packet.edit import option_spans
from mbtest.packet.headers import parse_tcp
from mbtest.packet.names import flag_text
from mbtest.packet.quote import View
from mbtest.probe.describe import answer, options_short
from mbtest.probe.diff import diff
from mbtest.probe.engine import Sweep

SCHEMA = schema("probe")


def covers(view: View, field: str) -> bool:
    """Whether a quote holds the field a change is about: the whole options field for an
    option (a quote cut inside it cannot show a change after the cut), the whole payload."""
    if field.startswith("ip.") or field in ("source", "destination"):
        return view.ip_len is not None
    if field.startswith("tcp.options") or field[:1].isupper():
        return view.options_complete
    if field.startswith("payload"):
        return view.payload_complete
    return field in view.tcp_fields()


# What a quote must reach for a change of each kind to show, in the order quotes are cut.
FIELD_CLASSES = (
    ("IP header", "ip.protocol"),
    ("TCP ports and sequence number", "tcp.seq"),
    ("TCP header", "tcp.window"),
    ("TCP options", "tcp.options"),
    ("payload", "payload"),
)


def observability(sweep: Sweep, last: int, has_payload: bool) -> dict[str, Any]:
    """Which hops' changes the quotes can show, per kind of field. A change is observable when
    a router after it returned a quote long enough to hold the field: for each kind, the
    last router (up to ``last``, the one before the destination) whose quote held it; a
    change made after that hop cannot show from here, whatever happened (a router that
    quoted 8 bytes, a silent or rate-limited one: unknown, never "no change")."""
    fields = []
    for label, probe_field in FIELD_CLASSES:
        if probe_field == "payload" and not has_payload:
            continue
        seen = [t for t, a in sweep.answers.items() if t <= last and covers(a.quote, probe_field)]
        to_ttl = max(seen, default=0)
        if to_ttl >= last:
            continue
        hidden = range(to_ttl + 1, last + 1)
        short = [t for t in hidden if t in sweep.answers]
        silent = [t for t in hidden if t not in sweep.answers]
        why = []
        if short:
            why.append(f"{_ttls(short)} quoted too little")
        if silent:
            why.append(f"{_ttls(silent)} did not answer")
        fields.append(
            {
                "fields": label,
                "to_ttl": to_ttl,
                "hidden": [hidden[0], hidden[-1]],
                "text": f"{label}: a change after hop {to_ttl} is not observable from here "
                f"({'; '.join(why)})",
            }
        )
    return {"last_router_ttl": last, "complete": not fields, "hidden": fields}


def _ttls(ttls: list[int]) -> str:
    runs, start = [], ttls[0]
    for a, b in zip(ttls, [*ttls[1:], None], strict=True):
        if b != a + 1:
            runs.append(str(start) if start == a else f"{start}-{a}")
            start = b
    return ("hop " if len(ttls) == 1 else "hops ") + ", ".join(runs)


def _after(covering: list[tuple[int, View]], ttl: int, field: str) -> int:
    """The last hop before ``ttl`` whose quote held ``field`` (0: the probe as sent): with
    the first hop that shows a change, where the change was made, at hop precision."""
    return max((t for t, view in covering if t < ttl and covers(view, field)), default=0)


def _key(change: dict[str, Any]) -> tuple[str, str]:
    return change["field"], change["text"]


def sent_view(sweep: Sweep) -> dict[str, Any]:
    """The probe as sent (its TTL-1 packet), for the reader."""
    raw = sweep.packet(1)
    seg = parse_tcp(raw)
    assert seg is not None
    key = "sequence number" if sweep.segment.vary == "seq" else "TSval"
    if sweep.segment.vary == "seq" and sweep.segment.ts_offset is not None:
        key = "sequence number and TSval"
    return {
        "src": f"{seg.src}:{seg.sport}" if seg.ip_version == 4 else f"[{seg.src}]:{seg.sport}",
        "dst": f"{seg.dst}:{seg.dport}" if seg.ip_version == 4 else f"[{seg.dst}]:{seg.dport}",
        "flags": flag_text(seg.flags),
        "seq": seg.seq,
        "ack": seg.ack,
        "window": seg.window,
        "options": options_short(seg),
        "options_hex": seg.options_raw.hex(),
        "payload_bytes": len(seg.payload),
        "hex": raw.hex(),
        "per_ttl": f"IP ID and {key} + TTL" if seg.ip_version == 4 else f"{key} + TTL",
        "per_flow": "addresses, ports" + ("" if seg.ip_version == 4 else ", flow label"),
    }


def probe_result(
    name: str,
    summary: str,
    sweep: Sweep,
    notes: list[str],
    seconds: float,
    names: dict[str, str] | None = None,
) -> dict[str, Any]:
    names = names or {}
    notes = list(notes)
    if sweep.malformed:
        notes.append(
            f"{len(sweep.malformed)} packet(s) from the target could not be read and "
            f"were left out (first: {sweep.malformed[0]})"
        )
    for placed, how in (
        (sweep.tied_alone, "sending that TTL alone"),
        (sweep.tied_by_router, "its router, which another probe of the run saw there"),
    ):
        if placed:
            notes.append(
                f"{_ttls(sorted(set(placed)))}: quotes holding no per-TTL key (cut to 8 bytes "
                f"of an IPv6 segment, or a key a middlebox shifted), each tied to its TTL by {how}"
            )
    if sweep.keyless:
        notes.append(f"{sweep.keyless} quote(s) without a per-TTL key could not be placed")
    target = sweep.segment.dst
    end = sweep.end_ttl
    at_target = end is not None and end in sweep.answers and sweep.answers[end].router == target
    if end is not None:
        last = end - 1 if at_target or end not in sweep.answers else end
    else:
        last = max(sweep.answers, default=0)
    hops: list[dict[str, Any]] = []
    seen: set[tuple[str, str]] = set()
    previous: tuple[View, list[dict[str, Any]]] | None = None
    covering: list[tuple[int, View]] = []
    for ttl in range(1, last + 1):
        hop = sweep.answers.get(ttl)
        if hop is None:
            hops.append({"ttl": ttl, "silent": True, "router": None, "changes": []})
            continue
        quote = hop.quote
        changes = [c.as_dict() for c in diff(View(sweep.packet(ttl)), quote)]
        for change in changes:
            change["first"] = _key(change) not in seen
            if change["first"]:
                change["after_ttl"] = _after(covering, ttl, change["field"])
            seen.add(_key(change))
        covering.append((ttl, quote))
        since: list[dict[str, str]] = []
        if previous is not None:
            before_view, before = previous
            now_keys, before_keys = {_key(c) for c in changes}, {_key(c) for c in before}
            since += [
                {"change": "appeared", "text": c["text"]}
                for c in changes
                if _key(c) not in before_keys and covers(before_view, c["field"])
            ]
            since += [
                {"change": "disappeared", "text": c["text"]}
                for c in before
                if _key(c) not in now_keys and covers(quote, c["field"])
            ]
        previous = (quote, changes)
        hops.append(
            {
                "ttl": ttl,
                "silent": False,
                "router": hop.router,
                "name": names.get(hop.router),
                "rtt_ms": round(hop.rtt * 1000, 3),
                "icmp": hop.icmp.what,
                "quote": quote.quote_class(),
                "quote_bytes": len(hop.icmp.quote),
                "rfc4884_extensions": hop.icmp.extensions,
                "changes": changes,
                "since_previous": since,
            }
        )
    first = next((h for h in hops if h["changes"]), None)
    seen_view = observability(sweep, last, bool(sweep.segment.payload))
    notes += [hidden["text"] for hidden in seen_view["hidden"]]
    return {
        "name": name,
        "summary": summary,
        "notes": notes,
        "sent": sent_view(sweep),
        "hops": hops,
        "first_change": None
        if first is None
        else {
            "ttl": first["ttl"],
            "router": first["router"],
            "after_ttl": min(c.get("after_ttl", 0) for c in first["changes"]),
            "changes": [c["text"] for c in first["changes"]],
        },
        "observability": seen_view,
        "destination": destination(sweep, at_target),
        "packets_sent": sweep.packets_sent,
        "rounds": sweep.rounds,
        "unmatched_icmp": sweep.unmatched,
        "malformed_replies": len(sweep.malformed),
        "seconds": round(seconds, 3),
    }


def path_differs(probes: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """The TTLs at which the probes of one run (each its own flow: its own ports) were
    answered by different routers: a router before them balances flows over several paths
    (ECMP). Each probe keeps what routers hash the same for all its TTLs, so one probe's
    hops are one path; the probes' paths differ."""
    by_ttl: dict[int, dict[str, list[str]]] = {}
    for probe in probes:
        for hop in probe.get("hops", []):
            if hop.get("router"):
                by_ttl.setdefault(hop["ttl"], {}).setdefault(hop["router"], []).append(
                    probe["name"]
                )
    out = []
    for ttl, routers in sorted(by_ttl.items()):
        if len(routers) > 1:
            said = "; ".join(f"{r} for {', '.join(names)}" for r, names in routers.items())
            text = f"hop {ttl} differs between probes ({said}): per-flow load balancing"
            out.append({"ttl": ttl, "routers": routers, "text": text})
    return out


def destination(sweep: Sweep, icmp_from_target: bool) -> dict[str, Any]:
    """The target's own answer, told apart from what the path did to the probe."""
    end = sweep.end_ttl
    base = {"address": sweep.segment.dst, "ttl": end}
    if sweep.replies:
        reply = next((r for r in sweep.replies if r.ttl == end), sweep.replies[0])
        has_mptcp = any(s.kind == MPTCP_KIND for s in option_spans(sweep.segment.options))
        out = {**base, "reached": True, **answer(reply.segment, has_mptcp)}
        out["rtt_ms"] = None if reply.rtt is None else round(reply.rtt * 1000, 3)
        out["answers"] = len(sweep.replies)
        if sweep.segment.check is not None:
            try:
                out["check"] = sweep.segment.check(reply.segment)
            except Exception as e:  # a probe file's own check: say what broke, keep the rest
                out["check"] = f"the probe's check failed: {type(e).__name__}: {e}"
        return out
    if icmp_from_target and end is not None:
        hop = sweep.answers[end]
        return {
            **base,
            "reached": True,
            "kind": "ICMP",
            "text": f"ICMP {hop.icmp.what}",
            "rtt_ms": round(hop.rtt * 1000, 3),
        }
    if sweep.max_ttl in sweep.answers:  # routers still answering at the last TTL tried
        text = f"not reached within {sweep.max_ttl} hops (a larger --max-ttl may reach it)"
        return {**base, "reached": False, "kind": "beyond max TTL", "text": text}
    last = max(sweep.answers, default=0)
    text = f"no answer from the target; hops {last + 1}-{sweep.max_ttl} silent"
    return {**base, "reached": False, "kind": "silence", "text": text}


def _changed(part: Any) -> bool:
    """Whether a part of what the server saw holds changes (a list, or a dict with them)."""
    return bool(part.get("changes") if isinstance(part, dict) else part)


def probe_status(doc: dict[str, Any]) -> int:
    """The exit status of a probe document (mbtest.errors): 3 when a probe failed (not the
    path: its own file or the tool), else 1 when the path changed a probe or kept the setup
    from completing or a target deviated from the RFC (or did not answer), else 0."""
    probes = doc.get("probes", [])
    servers = [p["server"] for p in probes if p.get("server")]
    if any(p.get("error") and not p.get("setup_failed") for p in probes):
        return HARNESS
    if any(s.get("error") and not s.get("tampered") for s in servers):
        return HARNESS  # the cooperating server could not do what was asked
    if any(p.get("first_change") or p.get("setup_failed") for p in probes):
        return FINDINGS
    seen = ("forward", "back", "crafted")  # the server saw a change (or its channel changed)
    if any(s.get("tampered") or any(_changed(s.get(k)) for k in seen) for s in servers):
        return FINDINGS
    judged = [p["conformance"]["verdict"] for p in probes if p.get("conformance")]
    if any(v in ("deviates", "no-answer", "inconclusive") for v in judged):
        return FINDINGS
    return OK
