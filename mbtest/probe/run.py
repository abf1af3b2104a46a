"""Run probes against a target: resolve and vet it, open the raw sockets and the RST guard,
sweep each probe, and close everything again however the run ends."""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import queue
import random
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from mbtest import jsondoc
from mbtest.endpoints.control import ControlError, Tampered
from mbtest.errors import Interrupted, MbtestError, Terminated
from mbtest.host import netns, owners, signals
from mbtest.host.paths import OutputError
from mbtest.jsondoc import schema
from mbtest.probe import conform, engine, loader, serverside
from mbtest.probe.guard import RstGuard
from mbtest.probe.rawio import Fanout, ProbeView, RawSockets, Recorder
from mbtest.probe.serverside import ServerLink, server_view
from mbtest.probe.session import ProbeSetupError, Session, TargetState
from mbtest.probe.wire import Segment

PORTS_PER_PROBE = 2  # mp_join takes two (its connection, then the join); the others one


class TargetError(MbtestError):
    """A target that cannot or must not be probed."""


class UnreachableTarget(TargetError):
    """No route from here to the target."""


@dataclass
class ProbeOptions:
    port: int = 80
    probes: tuple[str, ...] = loader.DEFAULT
    max_ttl: int = 30
    timeout: float = 2.0
    tries: int = 3
    version: int | None = None  # 4, 6, or whatever the name resolves to first
    resolve_names: bool = True
    serial: bool = False
    pace: float = 0.001
    seed: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)
    server: tuple[str, int] | None = None  # mbtest serve's control address (--server)
    secret: bytes | None = field(default=None, repr=False)  # its shared secret


def resolve(target: str, version: int | None) -> tuple[str, int]:
    """The address to probe, or one clear sentence on why there is none."""
    family = {4: socket.AF_INET, 6: socket.AF_INET6, None: socket.AF_UNSPEC}[version]
    try:
        infos = socket.getaddrinfo(target, None, family, socket.SOCK_STREAM)
    except (socket.gaierror, UnicodeError) as e:
        want = f" as IPv{version}" if version else ""
        raise TargetError(f"cannot resolve {target!r}{want}: {getattr(e, 'strerror', e)}") from None
    address = ipaddress.ip_address(infos[0][4][0])
    if address.is_unspecified:
        raise TargetError(f"{target} is the unspecified address: nothing to probe")
    if address.is_multicast:
        raise TargetError(f"{target} is a multicast address: probes go to one host only")
    if address.version == 4 and address == ipaddress.IPv4Address("255.255.255.255"):
        raise TargetError(f"{target} is the broadcast address: probes go to one host only")
    if address.version == 4 and str(address) in _local_broadcasts():
        raise TargetError(f"{target} is a subnet broadcast address here: probes go to one host")
    return str(address), address.version


def _local_broadcasts() -> set[str]:
    """The IPv4 broadcast addresses of this host's interfaces (``ip -j``: a few
    milliseconds, where loading a netlink library would delay the first probe)."""
    try:
        done = subprocess.run(
            ["ip", "-j", "-4", "addr"], capture_output=True, text=True, timeout=5, check=True
        )
        links = json.loads(done.stdout or "[]")
    except (OSError, subprocess.SubprocessError, ValueError):
        return set()
    return {
        info["broadcast"]
        for link in links
        for info in link.get("addr_info", [])
        if isinstance(info, dict) and info.get("broadcast")
    }


def source_for(address: str, version: int) -> str:
    """The local address the kernel would use toward the target."""
    family = socket.AF_INET if version == 4 else socket.AF_INET6
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        try:
            probe.connect((address, 9))
        except OSError as e:
            raise UnreachableTarget(f"{address} is unreachable from here: {e.strerror}") from None
        return probe.getsockname()[0]


def reverse_names(addresses: set[str], deadline: float = 2.0) -> dict[str, str]:
    """Reverse DNS for the routers seen, all at once, giving up at the deadline."""
    names: dict[str, str] = {}

    def lookup(address: str) -> None:
        with contextlib.suppress(OSError):
            names[address] = socket.gethostbyaddr(address)[0]

    threads = [threading.Thread(target=lookup, args=(a,), daemon=True) for a in addresses]
    for t in threads:
        t.start()
    end = time.monotonic() + deadline
    for t in threads:
        t.join(max(0.0, end - time.monotonic()))
    return dict(names)


def _reset_answered_syns(session: Session, sweep: engine.Sweep) -> None:
    """Free what SYN/ACKs from the target hold there: one RST per answered SYN."""
    for reply in sweep.replies:
        seg = reply.segment
        if seg.syn and seg.is_ack:
            session.send(
                Segment(session.source, session.target, seg.dport, seg.sport, seg.ack, flags="R")
            )


@dataclass
class Toward:
    """Where a run's probes go and how: the target, the local source, the options, and the
    guard that keeps the local stack from resetting what the probes start."""

    address: str
    source: str
    options: ProbeOptions
    guard: RstGuard
    server: ServerLink | serverside.BrokenLink | None = None  # mbtest serve on the target


def run_probe(
    spec: loader.ProbeSpec,
    io: RawSockets | ProbeView,
    toward: Toward,
    rng: random.Random,
    together: Together | None = None,
    slot: int = 0,
) -> tuple[dict, set[str]]:
    """One probe: its setup (a handshake for some), its sweep, its result and the routers
    that answered. ``together`` is what probes running side by side share."""
    options = toward.options
    session = Session(
        io, toward.guard, toward.address, options.port, toward.source, options.timeout, rng
    )
    if together is not None:
        session.target_state = together.target
    started = time.monotonic()
    if spec.suite == "conformance":  # an exchange with the target, judged; not swept
        if toward.server is not None:
            session.note("--server is not used by conformance probes (their answers are judged)")
        try:
            return conform.play(spec, session), set()
        except MbtestError:
            raise
        except Exception as e:  # a user's probe file: say what broke, keep the other probes
            why = f"probe {spec.name} ({spec.path}) failed: {type(e).__name__}: {e}"
            return _failed(spec, why, session.notes, started), set()
        finally:
            session.close()
    try:
        try:
            segment = spec.build(session)
        except ProbeSetupError as e:  # a finding about the path or target, not a failure
            result = _failed(spec, str(e), session.notes, started)
            result["setup_failed"] = True
            return result, set()
        except MbtestError:
            raise
        except Exception as e:  # a user's probe file: say what broke, keep the other probes
            why = f"probe {spec.name} ({spec.path}) failed: {type(e).__name__}: {e}"
            return _failed(spec, why, session.notes, started), set()
        if not isinstance(segment, Segment):
            why = f"probe {spec.name}: build() returned {type(segment).__name__}, not a Segment"
            return _failed(spec, why, session.notes, started), set()
        slots, hint = (together.slots, together.path) if together else (1, engine.PathHint())
        sweep = engine.Sweep(segment, options.max_ttl, rng, slot=slot, slots=slots, hint=hint)
        sweep.flow_label = session.flow_label(segment.sport)  # (IPv6: its handshake's too)
        watched = _watch(toward.server)
        if options.serial:
            engine.serial(io, sweep, options.timeout, options.tries)
        else:
            engine.parallel(io, sweep, options.timeout, options.tries, options.pace)
        _reset_answered_syns(session, sweep)
    finally:
        session.close()
    routers = {a.router for a in sweep.answers.values()}
    from mbtest.probe.result import probe_result  # (loaded once the first packet is out)

    result = probe_result(spec.name, spec.summary, sweep, session.notes, time.monotonic() - started)
    if toward.server is not None:
        result["server"] = _server_part(toward.server, watched, sweep, result["hops"], io)
    return result, routers


def _watch(server: ServerLink | serverside.BrokenLink | None) -> str | Exception | None:
    """Ask the cooperating server to record this probe (a nonce), or the error that kept it
    from doing so (reported with the result, never ending the probe)."""
    if server is None:
        return None
    try:
        return server.watch()
    except ControlError as e:
        return e


def _server_part(
    server: ServerLink | serverside.BrokenLink, watched, sweep: engine.Sweep, hops: list, io
) -> dict:
    """What the server saw of this probe, and what came of the probe's options sent back;
    or why nothing of it is reported."""
    if isinstance(watched, Exception):
        error: Exception = watched
    else:
        try:
            fetched = server.fetch(watched)
            served = serverside.Served.read(sweep, fetched)
            view = server_view(sweep, served, hops)
            timeout = 1.0
            crafted = serverside.crafted_back(server, watched, sweep, served, io, timeout)
            if crafted is not None:
                view["crafted"] = crafted
            return view
        except ControlError as e:
            error = e
    return {"error": str(error), "tampered": isinstance(error, Tampered)}


@dataclass
class Together:
    """What the probes of one run share when they run side by side: the IP ID space (split
    in slots), what they learnt of the path and whether the target proved silent."""

    slots: int
    path: engine.PathHint = field(default_factory=engine.PathHint)
    target: TargetState = field(default_factory=TargetState)


def side_by_side(
    specs: list[loader.ProbeSpec], io: RawSockets, toward: Toward, rng: random.Random
) -> Iterator[tuple[int, dict, set[str]]]:
    """Every probe in a thread of its own over one socket reader; yields (index, result,
    routers) as each probe ends. However it ends, every probe has stopped and closed its
    session before this returns (a signal reaches them through their own checks)."""
    together = Together(len(specs))
    seeds = [rng.randrange(1 << 64) for _ in specs]  # a seeded run stays reproducible
    fanout = Fanout(io)
    ended: queue.SimpleQueue[tuple[int, Any]] = queue.SimpleQueue()

    def work(i: int, spec: loader.ProbeSpec, view: ProbeView) -> None:
        try:
            outcome: Any = run_probe(spec, view, toward, random.Random(seeds[i]), together, i)
        except BaseException as e:  # handed to the main thread, which raises it
            outcome = e
        ended.put((i, outcome))

    threads = [
        threading.Thread(target=work, args=(i, spec, fanout.view()), name=f"probe-{spec.name}")
        for i, spec in enumerate(specs)
    ]
    try:
        for thread in threads:
            thread.start()
        for _ in threads:
            i, outcome = _next_ended(ended)
            if isinstance(outcome, BaseException):
                raise outcome
            yield i, *outcome
    finally:
        fanout.close()  # a probe still running stops at its next read
        for thread in threads:
            if thread.is_alive():
                thread.join(timeout=toward.options.timeout * toward.options.tries + 5)


def _next_ended(ended: queue.SimpleQueue) -> tuple[int, Any]:
    while True:
        signals.check()
        try:
            return ended.get(timeout=0.1)
        except queue.Empty:
            continue


def _failed(spec: loader.ProbeSpec, why: str, notes: list[str], started: float) -> dict:
    return {
        "name": spec.name,
        "summary": spec.summary,
        "notes": notes,
        "error": why,
        "hops": [],
        "first_change": None,
        "destination": None,
        "seconds": round(time.monotonic() - started, 3),
    }


def run(
    target: str,
    options: ProbeOptions,
    command: str = "",
    on_result: Callable[[dict[str, Any]], None] | None = None,
    budget: Any = None,
    pcap: str | None = None,
) -> dict[str, Any]:
    """Probe a target with every chosen probe; the schema-versioned result document.
    ``on_result`` is given, as each probe ends (in the order asked for: a probe that ends
    early waits for those before it), a document of its own (the same schema, holding that
    one probe): a stream of complete documents. ``pcap``: a file to write every packet
    sent and every answer about the target to (also when interrupted)."""
    specs = [loader.load(p) for p in options.probes]
    address, version = resolve(target, options.version)
    netns.require_root()
    source = source_for(address, version)
    rng = random.Random(options.seed)
    started, wall = time.monotonic(), datetime.now(UTC)
    results: dict[int, dict] = {}
    streamed = 0  # the results handed to on_result so far
    names: dict[str, str] = {}
    recorder = Recorder(address, source) if pcap else None
    # a campaign's run (it has the campaign's budget, shared by its targets) reads only what
    # concerns its target: the kernel filters out the other runs' answers
    io = RawSockets(version, budget, recorder, about=address if budget is not None else None)
    stopped: MbtestError | None = None

    def document(probes: list[dict], seconds: float) -> dict[str, Any]:
        from mbtest.probe.result import path_differs

        doc = {
            "schema": schema("probe"),
            "target": {
                "name": target,
                "address": address,
                "port": options.port,
                "ip_version": version,
            },
            "source": source,
            "mode": "serial" if options.serial else "parallel",
            "max_ttl": options.max_ttl,
            "timeout": options.timeout,
            "tries": options.tries,
            "started": wall.timestamp(),
            "seconds": round(seconds, 3),
            "command": command,
            "first_packet_seconds": io.first_packet_after_start(),
            "probes": probes,
        }
        if len(probes) > 1:
            doc["path_differs"] = path_differs(probes)
        return doc

    server = None
    try:
        with RstGuard(owners.new_run_id(), version) as guard:
            if options.server is not None:  # (before any packet: an error is one sentence)
                server = serverside.connect(*options.server, options.secret or b"")
                server.check_port(options.port)
            toward = Toward(address, source, options, guard, server)
            with contextlib.suppress(MbtestError, OSError):  # (else a port is guarded when taken)
                guard.reserve(source, address, options.port, PORTS_PER_PROBE * len(specs))
            if options.serial or len(specs) == 1:  # one after another (the classic way)
                each = ((i, *run_probe(spec, io, toward, rng)) for i, spec in enumerate(specs))
            else:
                each = side_by_side(specs, io, toward, rng)
            for i, result, seen in each:
                if options.resolve_names and seen - names.keys():
                    names.update(reverse_names(seen - names.keys()))
                for hop in result["hops"]:
                    hop["name"] = names.get(hop.get("router") or "")
                results[i] = result
                while on_result is not None and streamed in results:  # in the asked order
                    on_result(document([results[streamed]], results[streamed]["seconds"]))
                    streamed += 1
    except (Interrupted, Terminated) as e:  # what was measured is still written
        stopped = e
    finally:
        io.close()
        if server is not None:
            server.close()
        if recorder is not None:
            write_pcap(pcap, recorder.frames)
    doc = document([results[i] for i in sorted(results)], time.monotonic() - started)
    if pcap:
        doc["pcap"] = pcap
    if stopped is not None:
        doc["interrupted"] = f"{stopped}: {len(results)} of {len(specs)} probes ran"
        stopped.document = doc  # type: ignore[attr-defined]
        raise stopped
    return doc


def write_pcap(path: str, frames: list[tuple[float, bytes]]) -> None:
    from mbtest.packet.pcap import write_raw_ip

    try:
        write_raw_ip(path, frames)
    except OSError as e:
        raise OutputError(f"cannot write the capture {path}: {e.strerror}") from None


def write_outputs(doc: dict[str, Any], out_file: str | None, html_file: str | None) -> None:
    """The result as JSON (``-o``) and as an HTML report (``--html``, with its JSON beside);
    OutputError naming the place that could not be written."""
    target = out_file
    try:
        if out_file:
            with open(out_file, "w") as f:
                f.write(jsondoc.dumps(doc, indent=2))
        if html_file:
            data_file = out_file or os.path.splitext(html_file)[0] + ".json"
            if not out_file:
                target = data_file
                with open(data_file, "w") as f:
                    f.write(jsondoc.dumps(doc, indent=2))
            from mbtest.report.render import render  # (jinja2 is loaded only when asked for)

            target = html_file
            render([data_file], html_file)
    except OSError as e:
        raise OutputError(f"the result could not be written to {target}: {e.strerror}") from None
