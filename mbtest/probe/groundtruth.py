"""Pure: a campaign judged against the ground truth of the emulated Internet it ran on.

The truth is twofold: the generator's description of every path (which router sits at
which hop, how it quotes, whether it is silent or rate-limited, where a middlebox is) and
the middleboxes' own logs (which field of which packet of which flow they changed). From
those, each change a middlebox made to a probe's swept packets is *observable* when a router
after it returned a quote long enough to hold the field within the tries (the result's own
hops say which answered: a rate-limited router may or may not have). Then:

- recall: observable changes the result reports on the right field, placed at the right
  hop (after the hop it names as the last unchanged one, at or before the first changed);
- precision: reported changes that are such true changes;
- every change that is not observable must be said so (the result's hidden hops cover it)
  and the target's outcome must not be ``clean``;
- every hop the result names answers as the truth says (the router of that hop, or one of
  its ECMP pair; 8-byte quotes from exactly the routers that trim; silence from silent ones).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from mbtest.errors import MbtestError
from mbtest.mptcp.options import subtype_name
from mbtest.packet.edit import option_spans

SYN = 0x02


def truth_field(logged: str) -> str:
    """A logged field as the probe names it: engine notes and byte ranges dropped."""
    return re.sub(r" \(.*\)$|\[.*\]$", "", logged)


# fields that change with the length of what a middlebox changed: consequences, not changes
DERIVED = ("ip.length", "tcp.offset")


def field_matches(reported: str, true: str) -> bool:
    if reported in DERIVED:  # (an option removed or a payload resized moves the lengths)
        return true.startswith(("tcp.options", "payload")) or true[:1].isupper()
    return reported == true or reported.startswith(true + ".") or true.startswith(reported + ".")


def covers(quote: str | None, name: str) -> bool:
    """Whether a quote of this class (as the result names it) holds the field."""
    if quote == "full":
        return True
    if name.startswith("ip.") or name in ("source", "destination"):
        return quote in ("IP header only", "8 bytes", "partial")
    if name in ("tcp.sport", "tcp.dport", "tcp.seq"):
        return quote in ("8 bytes", "partial")
    return False  # (a partial quote may stop anywhere in the header: not counted on)


@dataclass
class Judgement:
    targets: int = 0
    true_changes: int = 0
    observable: int = 0
    found: int = 0
    reported: int = 0
    correct: int = 0
    missed: list[str] = field(default_factory=list)
    false_positives: list[str] = field(default_factory=list)
    unobservable: int = 0
    said_unobservable: int = 0
    unsaid: list[str] = field(default_factory=list)  # not observable, yet not said so
    hop_errors: list[str] = field(default_factory=list)
    unreadable: list[str] = field(default_factory=list)  # results lines that cannot be judged
    missing: list[str] = field(default_factory=list)  # truth targets without a result line
    unknown: list[str] = field(default_factory=list)  # result lines for no target of the truth
    probe_errors: list[str] = field(default_factory=list)  # probes that failed (not the path)
    outcome_errors: list[str] = field(default_factory=list)  # a target's word unlike its truth

    @property
    def shortfalls(self) -> list[str]:
        """Everything that makes the campaign disagree with the truth."""
        return [*self.missed, *self.false_positives, *self.unsaid, *self.hop_errors,
                *self.unreadable, *self.missing, *self.unknown, *self.probe_errors,
                *self.outcome_errors]  # fmt: skip

    @property
    def recall(self) -> float:
        return self.found / self.observable if self.observable else 1.0

    @property
    def precision(self) -> float:
        return self.correct / self.reported if self.reported else 1.0

    def as_dict(self) -> dict[str, Any]:
        out = dict(self.__dict__)
        out.update(recall=self.recall, precision=self.precision)
        return out

    def summary(self) -> str:
        return (
            f"{self.targets} targets: {self.true_changes} changes made to swept probes, "
            f"{self.observable} observable from the quotes; recall {self.recall:.0%} "
            f"({self.found}/{self.observable}), precision {self.precision:.0%} "
            f"({self.correct}/{self.reported}); {self.said_unobservable} of "
            f"{self.unobservable} unobservable changes said not observable; "
            f"{len(self.hop_errors)} hops unlike the truth"
            + "".join(f"; {len(found)} {what}" for what, found in (
                ("lines could not be judged", self.unreadable),
                ("targets without a result", self.missing),
                ("results for unknown targets", self.unknown),
                ("probes failed", self.probe_errors),
                ("outcomes unlike the truth", self.outcome_errors),
            ) if found)
        )  # fmt: skip


def judge(
    truth: dict[str, Any], results: list[dict[str, Any]], logs: dict[str, list[dict[str, Any]]]
) -> Judgement:
    """``results``: the campaign's lines (one family's: each truth target needs a line);
    ``logs``: each middlebox node's log entries."""
    targets: dict[str, dict[str, Any]] = {}
    try:
        routers = truth["routers"]
        for target in truth["targets"]:
            for address in target["address"].values():
                targets[address] = target
            _ = (target["name"], target["path"], target["distance"], target["listen"])
    except (KeyError, TypeError, AttributeError) as e:
        why = f"{type(e).__name__}: {e}"
        raise GroundTruthError(f"the ground truth cannot be read: {why}") from None
    out = Judgement()
    seen: set[str] = set()
    for number, doc in enumerate(results, 1):
        try:
            name = (doc.get("campaign") or {}).get("target")
            target = targets.get(name)
            if target is None:
                out.unknown.append(f"line {number}: {str(name)[:60]} is no target of the truth")
                continue
            out.targets += 1
            seen.add(target["name"])
            _check_outcome(target, doc, out)
            for probe in doc.get("probes", []):
                if probe.get("error"):
                    if not probe.get("setup_failed"):
                        out.probe_errors.append(f"{target['name']} {probe.get('name')}: failed")
                    continue
                if not (probe.get("hops") or probe.get("destination")):
                    continue
                _check_hops(target, probe, routers, out)
                _check_distance(target, probe, out)
                _judge_probe(target, probe, doc, logs, out)
        except (KeyError, TypeError, ValueError, AttributeError) as e:  # (a damaged line)
            out.unreadable.append(f"line {number}: {type(e).__name__}: {e}")
    out.missing = [f"{t['name']}: no result" for t in truth["targets"] if t["name"] not in seen]
    return out


class GroundTruthError(MbtestError):
    """A ground truth file that is not one."""


ANSWERED = ("SYN/ACK", "ACK", "RST")  # the target's own answers (TCP)


def _check_distance(target, probe, out: Judgement) -> None:
    """The destination where the truth puts it, when the target itself answered."""
    destination = probe.get("destination") or {}
    if destination.get("kind") in ANSWERED and destination.get("ttl") != target["distance"]:
        out.hop_errors.append(
            f"{target['name']} {probe['name']}: the target answered at TTL "
            f"{destination.get('ttl')}, it is at {target['distance']}"
        )


EXPECTED_OUTCOMES = {  # (with a middlebox on the path, "changed" too, whatever the target)
    "silent": ("no-answer",),
    "closed": ("unreachable",),
    "tcp": ("no-mptcp", "not-observable"),
    "mptcp": ("clean", "not-observable"),
}


def _check_outcome(target, doc, out: Judgement) -> None:
    said = doc["campaign"]["outcome"]
    allowed = EXPECTED_OUTCOMES.get(target["listen"], ())
    if target.get("middlebox"):
        allowed = (*allowed, "changed")
    if said not in allowed:
        out.outcome_errors.append(
            f"{target['name']} ({target['listen']}): {said}, expected {' or '.join(allowed)}"
        )


def _check_hops(target, probe, routers, out: Judgement) -> None:
    nodes_at = {hop["ttl"]: hop["nodes"] for hop in target["path"]}
    for hop in probe["hops"]:
        where = f"{target['name']} {probe['name']} hop {hop['ttl']}"
        nodes = nodes_at.get(hop["ttl"])
        if nodes is None:
            out.hop_errors.append(f"{where}: answered beyond the routers of the path")
            continue
        if hop["silent"]:
            if not any(routers[n]["silent"] or routers[n]["ratelimit_ms"] for n in nodes):
                out.hop_errors.append(f"{where}: silent, yet its router answers every error")
            continue
        owner = next((n for n in nodes if hop["router"] in routers[n]["addresses"]), None)
        if owner is None:
            out.hop_errors.append(f"{where}: {hop['router']} is not {' or '.join(nodes)}")
            continue
        if routers[owner]["silent"]:
            out.hop_errors.append(f"{where}: {owner} never answers, yet it did")
        trimmed = routers[owner]["quote_bytes"] is not None
        if trimmed != (hop.get("quote") == "8 bytes"):
            out.hop_errors.append(f"{where}: {owner} quoted {hop.get('quote')}")


def _judge_probe(target, probe, doc, logs, out: Judgement) -> None:
    box = target.get("middlebox")
    true = _true_changes(probe, logs.get(box["node"], [])) if box else set()
    last = (probe.get("observability") or {}).get("last_router_ttl", target["distance"] - 1)
    answered = {h["ttl"]: h.get("quote") for h in probe["hops"] if not h["silent"]}
    reported = [
        (hop["ttl"], c["field"], c.get("after_ttl", 0))
        for hop in probe["hops"]
        for c in hop["changes"]
        if c.get("first")
    ]
    where = f"{target['name']} {probe['name']}"
    for name in sorted(true):
        out.true_changes += 1
        at = box["ttl"]
        seen = any(covers(answered.get(t), name) for t in range(at + 1, last + 1))
        if seen:
            out.observable += 1
            if any(f not in DERIVED and field_matches(f, name) and a <= at < t
                   for t, f, a in reported):  # fmt: skip
                out.found += 1
            else:
                out.missed.append(f"{where}: {name} changed after hop {at}, not reported there")
            continue
        out.unobservable += 1
        hidden = (probe.get("observability") or {}).get("hidden", [])
        said = any(h["to_ttl"] <= at and _kind_holds(h["fields"], name) for h in hidden)
        if said and doc["campaign"]["outcome"] != "clean":
            out.said_unobservable += 1
        else:
            out.unsaid.append(f"{where}: {name} changed after hop {at} where quotes cannot show")
    for t, f, a in reported:
        out.reported += 1
        if box and any(field_matches(f, name) for name in true) and a <= box["ttl"] < t:
            out.correct += 1
        else:
            out.false_positives.append(f"{where}: {f} reported between hops {a} and {t}")


KINDS = {
    "IP header": ("ip.",),
    "TCP ports and sequence number": ("tcp.sport", "tcp.dport", "tcp.seq"),
    "TCP header": ("tcp.",),
    "TCP options": ("tcp.options",),
    "payload": ("payload",),
}


def _kind_holds(kind: str, name: str) -> bool:
    """Whether a kind of field the result says is hidden includes this field."""
    if kind == "TCP options" and name[:1].isupper():
        return True
    if kind == "TCP header" and name.startswith("tcp.options"):
        return False
    return any(name.startswith(prefix) for prefix in KINDS.get(kind, ()))


def _true_changes(probe: dict[str, Any], entries: list[dict[str, Any]]) -> set[str]:
    """The fields the middlebox changed in this probe's swept packets: the log entries of
    its flow, toward the target, of its kind of segment (SYNs for stateless probes; for
    probes inside a connection, its segments without SYN), about an option it carries."""
    sent = probe.get("sent") or {}
    flow = f"{sent.get('src')} > {sent.get('dst')}"
    syn = "S" in str(sent.get("flags", ""))
    carried = _options_carried(sent.get("options_hex", ""))
    out = set()
    for entry in entries:
        if entry.get("flow") != flow or entry.get("direction") != "c>s":
            continue
        if bool(int(entry.get("flags") or 0) & SYN) != syn:
            continue
        if not syn and entry.get("seq") != sent.get("seq"):
            continue
        name = truth_field(str(entry.get("field", "")))
        option = name.split(".")[0]
        if option[:1].isupper() and option not in carried:
            continue  # (a handshake segment's option: the swept segment has none)
        out.add(name)
    return out


def _options_carried(options_hex: str) -> set[str]:
    try:
        raw = bytes.fromhex(options_hex)
        spans = option_spans(raw, cut=True)
    except ValueError:
        return set()
    return {subtype_name(s) for s in (span.subtype(raw) for span in spans) if s is not None}
