"""Why a transfer stalled, from the captures and counters: what the stalled side keeps
sending, whether it leaves the host, whether it reaches the other side, whether the other
side acknowledges it, and whether a middlebox drops it. One diagnosis, reused by the run's
output, cell.json and the report."""

from __future__ import annotations

from collections import Counter
from typing import Any

from mbtest.errors import CodecError
from mbtest.mptcp.fields import short
from mbtest.mptcp.options import decode
from mbtest.packet.edit import option_spans
from mbtest.packet.names import option_name
from mbtest.packet.quote import View
from mbtest.verdict.evidence import Evidence

MASK32 = 0xFFFFFFFF


def diagnose(evidence: Evidence) -> dict[str, Any] | None:
    """The diagnosis of a stalled transfer, or None when it did not stall."""
    transfer = evidence.doc.get("transfer") or {}
    if not transfer.get("stalled"):
        return None
    direction = transfer.get("stalled_direction") or "c>s"
    sender, receiver = ("client", "server") if direction == "c>s" else ("server", "client")
    stream = next((s for s in transfer["streams"] if s["direction"] == direction), {})
    out: dict[str, Any] = {
        "direction": direction,
        "sender": sender,
        "delivered": stream.get("received"),
        "requested": stream.get("requested"),
        "basis": transfer.get("stall_basis"),
        "after_seconds": transfer.get("stall_after"),
    }
    counters = evidence.doc.get("counters", {})
    context = []
    if counters.get(sender, {}).get("MPFailRx") or counters.get(sender, {}).get("MPFailTx"):
        context.append("MP_FAIL")
    if counters.get(sender, {}).get("InfiniteMapTx"):
        context.append("an infinite mapping")
    out["after"] = context
    refused = [r for r in evidence.icmp(f"{sender}.pcap") if r.local and r.error.too_big]
    host = evidence.doc.get("host_counters", {}).get(sender, {})
    counted = host.get("Ip.FragFails", 0) + host.get("Ip6.FragFails", 0)
    out["refused_locally"] = max(len(refused), counted)  # the capture's view, or the counters
    other = evidence.doc.get("host_counters", {}).get(receiver, {})
    out["refused_at_receiver"] = other.get("Ip.FragFails", 0) + other.get("Ip6.FragFails", 0)
    if refused:
        sizes = Counter(View(r.error.quote).total_length for r in refused)
        size, _ = sizes.most_common(1)[0]
        typical = next(r for r in refused if View(r.error.quote).total_length == size)
        out["refused_size"] = size
        out["refused_sizes"] = {str(k): v for k, v in sizes.most_common()}
        out["path_mtu"] = typical.error.mtu
        out["refused_options"] = _options(View(typical.error.quote))
    sent = _last_data(evidence, f"{sender}.pcap", direction)
    out["keeps_sending"] = sent
    arrived = _arrived(evidence, f"{receiver}.pcap", direction, sent)
    out["reaches_receiver"] = arrived
    out["acknowledged"] = _acknowledged(evidence, f"{receiver}.pcap", direction, sent)
    drops = [
        e
        for e in evidence.log
        if e.get("direction") == direction
        and (e.get("after") == "dropped" or e.get("field") == "packet")
    ]
    out["middlebox_drops"] = len(drops)
    out["text"] = _sentence(out)
    return out


def _options(view: View) -> list[str]:
    raw = view.options or b""
    names = []
    for span in option_spans(raw, cut=True):
        if span.kind == 30:
            try:
                names.append(short(decode(bytes(raw[span.start : span.end]), strict=False)))
            except CodecError:  # a quote cut inside an option
                names.append("MPTCP (cut)")
        elif span.kind > 1:
            names.append(option_name(span.kind))
    return names


def _last_data(evidence: Evidence, capture: str, direction: str) -> dict[str, Any] | None:
    """The sender's last data segments on its own capture: what it kept (re)sending."""
    records = evidence.records(capture)
    if not records:
        return None
    data = [r for r in records if r.direction == direction and r.payload_length]
    if not data:
        return None
    last = data[-1]
    repeats = sum(1 for r in data if r.seq == last.seq and r.flow == last.flow)
    return {
        "frame": last.frame,
        "flow": last.flow,
        "seq": last.seq,
        "bytes": last.payload_length,
        "times": repeats,
        "options": [o.name for o in last.options],
    }


def _arrived(evidence: Evidence, capture: str, direction: str, sent: dict | None) -> bool | None:
    records = evidence.records(capture)
    if records is None or sent is None:
        return None
    return any(
        r.direction == direction and r.seq == sent["seq"] and r.payload_length for r in records
    )


def _acknowledged(
    evidence: Evidence, capture: str, direction: str, sent: dict | None
) -> bool | None:
    records = evidence.records(capture)
    if records is None or sent is None:
        return None
    back = "s>c" if direction == "c>s" else "c>s"
    end = (sent["seq"] + sent["bytes"]) & MASK32
    return any(
        r.direction == back and "A" in r.tcp_flags and ((r.ack - end) & MASK32) < 1 << 31
        for r in records
    )


def _sentence(d: dict[str, Any]) -> str:
    arrow = "client to server" if d["direction"] == "c>s" else "server to client"
    parts = [f"{arrow} stalled after {d['delivered']} of {d['requested']} bytes"]
    if d.get("after"):
        parts.append(f"after {' and '.join(d['after'])}")
    if d["refused_locally"]:
        options = ", ".join(d.get("refused_options") or []) or "no options"
        others = len(d.get("refused_sizes", {})) - 1
        also = f", and {others} other size(s)" if others > 0 else ""
        if d.get("refused_size"):
            parts.append(
                f"the {d['sender']} keeps trying to send {d.get('refused_size')}-byte packets "
                f"({options}){also} over a {d.get('path_mtu')}-byte path MTU: refused locally "
                f"{d['refused_locally']} times ('fragmentation needed'), they never leave the host"
            )
        else:  # only the counters, no capture
            parts.append(
                f"the {d['sender']}'s packets were refused locally {d['refused_locally']} times "
                "(larger than the path MTU: IP fragmentation failures), they never leave the host"
            )
    elif d.get("keeps_sending"):
        sent = d["keeps_sending"]
        reach = {
            True: "they reach the receiver",
            False: "they never reach the receiver",
            None: "whether they reach the receiver is not known",
        }[d["reaches_receiver"]]
        ack = (
            {True: "which acknowledges them", False: "which does not acknowledge them", None: ""}[
                d["acknowledged"]
            ]
            if d["reaches_receiver"]
            else ""
        )
        parts.append(
            f"the {d['sender']} last sent {sent['bytes']} bytes at seq {sent['seq']} "
            f"({sent['times']} times); {reach}" + (f", {ack}" if ack else "")
        )
    if d.get("refused_at_receiver"):
        other = "server" if d["sender"] == "client" else "client"
        parts.append(
            f"meanwhile the {other}'s own packets were refused locally "
            f"{d['refused_at_receiver']} times (larger than the path MTU)"
        )
    if d["middlebox_drops"]:
        parts.append(f"the middlebox logged {d['middlebox_drops']} drops in that direction")
    if d.get("basis"):
        parts.append(f"(stall decided because {d['basis']})")
    return "; ".join(parts)
