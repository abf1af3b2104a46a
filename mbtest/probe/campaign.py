"""Campaigns: the probes toward many targets, a bounded number of targets in flight, one
packet budget shared by all of them, each target's result streamed as soon as it ends.

A target that proved silent is not asked again and again (the probe run already stops
handshaking a silent target); the budget is global, so however many workers run, the
network sees at most ``pps`` packets a second from the campaign, spread evenly.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import json
import os
import queue
import re
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any

from mbtest.errors import Interrupted, MbtestError, Stopped, Terminated
from mbtest.host import signals
from mbtest.jsondoc import CAMPAIGN_OUTCOMES, schema
from mbtest.probe.run import UnreachableTarget

HOST_NAME = re.compile(r"^(?=.{1,253}$)([A-Za-z0-9_]([A-Za-z0-9_-]{0,61}[A-Za-z0-9])?\.?)+$")
OUTCOMES = CAMPAIGN_OUTCOMES


class TargetLineError(MbtestError):
    """One line of a targets file that names no target (said in that target's result)."""

    def __init__(self, message: str, line: int):
        super().__init__(message)
        self.line = line


@dataclass(frozen=True)
class Target:
    host: str
    port: int
    line: int  # where it came from in the targets file (1-based)

    @property
    def key(self) -> tuple[str, int]:
        return (self.host, self.port)


def read_targets(lines: Iterable[str], default_port: int) -> Iterator[Target | TargetLineError]:
    """Targets from lines: ``host``, ``host,port``, ``[v6 address]:port`` or a JSON object
    with ``host`` (and ``port``). Blank lines and ``#`` comments are skipped; a line that
    names no target is a TargetLineError in its place, so the campaign goes on."""
    for number, raw in enumerate(lines, 1):
        text = raw.strip()
        if not text or text.startswith("#"):
            continue
        try:
            yield _target(text, number, default_port)
        except ValueError as e:
            yield TargetLineError(f"targets line {number}: {e}", number)


def _target(text: str, number: int, default_port: int) -> Target:
    if text.startswith("{"):
        try:
            fields = json.loads(text)
        except (ValueError, RecursionError):
            raise ValueError("not valid JSON") from None
        if not isinstance(fields, dict) or not isinstance(fields.get("host"), str):
            raise ValueError('a JSON target needs a "host" string')
        host, port = fields["host"], fields.get("port", default_port)
    elif text.startswith("["):
        host, closed, rest = text[1:].partition("]")
        if not closed:
            raise ValueError(f"{text[:60]!r}: an address in brackets needs its ']'")
        port = rest.lstrip(":,").strip() or default_port
    elif "," in text:
        host, _, port = (part.strip() for part in text.partition(","))
    else:
        host, port = text, default_port
    host = host.strip()
    if not host or any(c.isspace() for c in host):
        raise ValueError(f"{text[:60]!r} names no host")
    try:
        if isinstance(port, bool):
            raise TypeError
        port = int(port)
    except (TypeError, ValueError, OverflowError):
        raise ValueError(f"port {str(port)[:20]!r} is not a number") from None
    if not 0 < port < 65536:
        raise ValueError(f"port {port} is out of range")
    try:
        ipaddress.ip_address(host)
    except ValueError:
        if not HOST_NAME.match(host):
            raise ValueError(f"{host[:60]!r} is not a host name or address") from None
    return Target(host, port, number)


class PacketBudget:
    """A token bucket shared by every probe of the campaign: at most ``rate`` packets a
    second overall, with bursts of at most ``burst``; ``take`` waits for a token."""

    def __init__(self, rate: float, burst: int | None = None):
        if rate <= 0:
            raise MbtestError("--pps must be positive")
        self.rate = float(rate)
        self.burst = burst or max(1, int(rate / 20))
        self.tokens = float(self.burst)
        self.stamp = time.monotonic()
        self.lock = threading.Lock()
        self.taken = 0

    def take(self) -> None:
        while True:
            with self.lock:
                now = time.monotonic()
                self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate)
                self.stamp = now
                if self.tokens >= 1 - 1e-9:  # (rounding must not leave it a hair short)
                    self.tokens -= 1
                    self.taken += 1
                    return
                wait = max((1 - self.tokens) / self.rate, 1e-6)
            time.sleep(wait)


def outcome(doc: dict[str, Any]) -> str:
    """A target's result in one word, for summaries: ``error`` (a probe or the tool failed),
    ``unreachable`` (no route, an ICMP unreachable, or a RST to every probe: nothing
    listens on that port), ``no-answer`` (the
    target itself never answered), ``changed`` (the path changed a probe),
    ``not-observable`` (no change seen, but the quotes could not show a change on part of
    the path: routers there quoted too little or stayed silent; a plain-TCP answer is then
    no proof the target lacks MPTCP either), ``no-mptcp`` (it answered MP_CAPABLE in plain
    TCP and nothing on the way changed that), ``clean`` (nothing changed anywhere the
    quotes could see, and they saw up to the router before the target)."""
    if doc.get("error"):
        return "unreachable" if doc.get("unreachable") else "error"
    probes = doc.get("probes", [])
    if any(p.get("error") and not p.get("setup_failed") for p in probes):
        return "error"
    destinations = [p.get("destination") or {} for p in probes]
    if any(p.get("first_change") or _server_saw_change(p.get("server")) for p in probes):
        return "changed"
    if not any(d.get("reached") for d in destinations):
        icmp = [d for d in destinations if d.get("kind") == "ICMP"]
        return "unreachable" if icmp else "no-answer"
    refused = ("ICMP", "RST")  # an ICMP unreachable, or a RST: nothing listens there
    if all(d.get("kind") in refused for d in destinations if d.get("reached")):
        return "unreachable"
    if any(not (p.get("observability") or {}).get("complete", True) for p in probes):
        return "not-observable"
    plain = [
        p for p in probes
        if p.get("name") == "mp_capable" and (p.get("destination") or {}).get("kind") == "SYN/ACK"
        and not (p.get("destination") or {}).get("mptcp")
    ]  # fmt: skip
    return "no-mptcp" if plain else "clean"


def _server_saw_change(server: Any) -> bool:
    """Whether a cooperating server saw the path change the probe, either way."""
    if not isinstance(server, dict):
        return False
    back, crafted = server.get("back") or {}, server.get("crafted") or {}
    return bool(server.get("forward") or back.get("changes") or crafted.get("changes"))


@dataclass
class Campaign:
    """What a campaign is asked to do, and what it has done so far."""

    targets: list[Target | TargetLineError]
    workers: int
    budget: PacketBudget
    done: set[tuple[str, int]] = dataclasses.field(default_factory=set)  # --resume
    counts: Counter = dataclasses.field(default_factory=Counter)
    finished: int = 0
    started: float = dataclasses.field(default_factory=time.monotonic)

    def __post_init__(self) -> None:
        self.todo = [
            t for t in self.targets if isinstance(t, TargetLineError) or t.key not in self.done
        ]


def run(
    campaign: Campaign,
    probe_target: Callable[[Target, PacketBudget], dict[str, Any]],
    on_result: Callable[[dict[str, Any]], None],
) -> Stopped | None:
    """Probe every target not done yet, ``campaign.workers`` at a time; ``on_result`` gets
    each target's document (with its ``campaign`` part) as soon as it ends, from this
    thread. Ctrl-C or SIGTERM: no new target starts, those in flight end (each within its
    own deadlines) and are written; the signal is returned, for the caller to raise."""
    pending: queue.SimpleQueue = queue.SimpleQueue()
    for target in campaign.todo:
        pending.put(target)
    ended: queue.SimpleQueue = queue.SimpleQueue()
    stop = threading.Event()

    def work() -> None:
        while not stop.is_set():
            try:
                target = pending.get_nowait()
            except queue.Empty:
                return
            try:
                ended.put(_one(target, probe_target, campaign.budget))
            except Stopped:  # the run's own checkpoints saw the signal: this target stays
                return  # unwritten (a --resume probes it again); the main thread stops
            except Exception as e:  # never a traceback from a worker: the target says it
                part = {
                    "target": getattr(target, "host", None),
                    "port": getattr(target, "port", None),
                    "line": getattr(target, "line", None),
                    "outcome": "error",
                }
                why = f"{type(e).__name__}: {e}"
                ended.put(
                    {"schema": schema("campaign"), "error": why, "probes": [], "campaign": part}
                )

    threads = [threading.Thread(target=work, name=f"campaign-{i}") for i in range(campaign.workers)]
    for thread in threads:
        thread.start()
    stopped: Stopped | None = None
    try:
        while any(t.is_alive() for t in threads) or not ended.empty():
            try:
                if stopped is None:
                    signals.check()
                doc = ended.get(timeout=0.1)
            except queue.Empty:
                continue
            except (Interrupted, Terminated) as e:
                stopped = e
                stop.set()
                continue
            campaign.finished += 1
            campaign.counts[doc["campaign"]["outcome"]] += 1
            on_result(doc)
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    return stopped


def _one(target, probe_target, budget: PacketBudget) -> dict[str, Any]:
    """One target's document; a target that cannot be probed is a document saying why."""
    if isinstance(target, TargetLineError):
        doc: dict[str, Any] = {"error": str(target), "probes": []}
        part = {"target": None, "port": None, "line": target.line}
    else:
        part = {"target": target.host, "port": target.port, "line": target.line}
        try:
            doc = probe_target(target, budget)
        except MbtestError as e:
            doc = {"error": str(e), "probes": [], "unreachable": _unreachable(e)}
    doc["campaign"] = {**part, "outcome": outcome(doc)}
    doc.pop("unreachable", None)
    if "schema" not in doc:  # a target that could not be probed: a campaign line saying why
        doc = {"schema": schema("campaign"), **doc}
    return doc


def _unreachable(error: MbtestError) -> bool:
    return isinstance(error, UnreachableTarget)


def pcap_path(folder: str, host: str, port: int) -> str:
    """Where a target's packets go: one file per target and port, named after them (the
    colons of an IPv6 address written as underscores)."""
    name = re.sub(r"[^A-Za-z0-9._-]", "_", host)
    return os.path.join(folder, f"{name}_{port}.pcap")


def already_done(lines: Iterable[str]) -> set[tuple[str, int]]:
    """The targets an earlier run of the campaign wrote (``-o`` with ``--resume``); a line
    that cannot be read is skipped (its target runs again)."""
    done = set()
    for line in lines:
        try:
            part = json.loads(line).get("campaign")
        except (ValueError, AttributeError, RecursionError):
            continue
        if not isinstance(part, dict):
            continue
        if isinstance(part.get("target"), str) and isinstance(part.get("port"), int):
            done.add((part["target"], part["port"]))
    return done


def budget_line(campaign: Campaign) -> str:
    """How much of the packet budget the campaign used: below 1 when waiting for answers
    (timeouts, silent targets) left it idle; more workers keep it busier."""
    seconds = max(time.monotonic() - campaign.started, 1e-9)
    used = campaign.budget.taken / (campaign.budget.rate * seconds)
    return (
        f"{campaign.budget.taken} packets in {seconds:.1f} s: {used:.2f} of the budget of "
        f"{campaign.budget.rate:g} packets/s"
    )


def progress_line(campaign: Campaign) -> str:
    total = len(campaign.todo)
    seconds = time.monotonic() - campaign.started
    rate = campaign.finished / seconds if seconds > 0 else 0.0
    left = (total - campaign.finished) / rate if rate > 0 else float("nan")
    counts = ", ".join(f"{k} {campaign.counts[k]}" for k in OUTCOMES if campaign.counts[k])
    eta = f"ETA {left:.0f} s" if left == left else "ETA ?"
    return f"{campaign.finished}/{total} targets, {rate:.1f}/s, {eta}" + (
        f" ({counts})" if counts else ""
    )
