"""Run traffic between the real kernel MPTCP client and server of a testbed, and gather the
evidence into one schema-versioned JSON document: counters, socket info, hashes, captures,
decoded timelines and timings.

Run conditions let the event an expectation waits for happen: the connection can be held
open after the transfer (for timers such as ADD_ADDR retransmission), the server can
announce its addresses only once data has flowed, and a transfer that stops making
progress is called a stall only when the senders' own state says so (three RTO backoffs
unanswered, segments refused locally, zero-window probes unanswered, data the MPTCP
socket does not schedule) or when the run's bound is reached."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import socket
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from mbtest import __version__, jsondoc
from mbtest.endpoints import pm, sockets
from mbtest.endpoints.traffic import BLOCK, DRAINED, transfer
from mbtest.host import environment, netns, signals
from mbtest.jsondoc import schema
from mbtest.observe import counters, timeline
from mbtest.observe.capture import Capture, capturing
from mbtest.testbed.builder import Testbed
from mbtest.testbed.topology import Topology

SCHEMA = schema("run")
PORT = 18080


@dataclass
class RunConfig:
    ip_version: int = 4
    checksums: bool = False
    c2s_bytes: int = 1_000_000
    s2c_bytes: int = 1_000_000
    connect_timeout: float = 5.0
    join_wait: float = 2.0  # how long to wait for the expected subflows before sending
    stall_timeout: float = 5.0  # only without evidence (evidence=False): a fixed quiet time
    deadline: float = 60.0  # the bound on the transfer, whatever the evidence says
    capture: bool = True
    decode: bool = True
    text: str | None = None  # send this text repeated instead of random bytes
    port: int = PORT  # the server's port (21 for the FTP ALG's control connection)
    chunk: int = 65536  # largest write; small ones (with TCP_NODELAY) make small segments
    evidence: bool = True  # decide stalls from the senders' state, not a fixed timer
    hold: float = 0.0  # seconds the connection stays open after the transfer (timers)
    hold_until: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> counters
    announce: str = "at-start"  # or "late": the server's signal endpoints once data flowed


def signalled(topo: Topology, ip_version: int) -> int:
    """How many addresses the server's path manager announces (its signal endpoints)."""
    endpoints = topo.server.endpoints
    return sum(1 for e in endpoints if "signal" in e.flags and e.version == ip_version)


def expected_subflows(topo: Topology, ip_version: int) -> int:
    """Additional subflows the in-kernel path manager should open, from the topology."""
    client = topo.client
    own = sum(1 for e in client.endpoints if "subflow" in e.flags and e.version == ip_version)
    accepted = min(signalled(topo, ip_version), client.limits.get("add_addr_accepted", 0))
    return min(own + accepted, client.limits.get("subflows", 2))


def _await_subflows(
    bed: Testbed, client: socket.socket, expected: int, before: dict[str, int], wait: float
) -> dict[str, Any]:
    """Wait (at most ``wait`` seconds) until the client has its expected subflows, or until
    every join it was to try has been tried and none is still opening (a join that was
    reset or refused is not tried again by the in-kernel path manager: waiting on would
    only spend time). Says what ended the wait."""
    started = time.monotonic()
    deadline = started + wait
    ended = "the wait ran out"
    while time.monotonic() < deadline:
        info = sockets.mptcp_info(client)
        if info is None:
            ended = "the connection fell back to TCP"
            break
        if info["subflows"] >= expected:
            ended = "every expected subflow is open"
            break
        tried = counters.read(bed.client_ns).get("MPJoinSynTx", 0) - before.get("MPJoinSynTx", 0)
        opening = any(sf["state"] == "SYN_SENT" for sf in sockets.transport_infos(client))
        if tried >= expected and not opening:
            ended = f"every join was tried ({tried}) and none is still opening"
            break
        time.sleep(0.02)
    info = sockets.mptcp_info(client)
    return {
        "expected": expected,
        "open": None if info is None else info["subflows"],
        "ended": ended,
        "after_seconds": round(time.monotonic() - started, 3),
    }


def _snaplen(bed: Testbed) -> int:
    # whole packets: the largest MTU of the testbed and the link-layer header (a jumbo
    # path's 9000-byte segments must be captured whole to tell what they carry)
    largest = max((link.mtu or 1500 for link in bed.topology.links), default=1500)
    return max(4096, largest + 128) if bed.wire_segments else 0


def _endpoint_captures(bed: Testbed, out_dir: str) -> list[Capture]:
    caps = []
    for node in (bed.topology.client, bed.topology.server):
        path = os.path.join(out_dir, f"{node.name}.pcap")
        caps.append(Capture(bed.ns(node.name), "any", path, snaplen=_snaplen(bed)))
    return caps


def _captures(bed: Testbed, out_dir: str, endpoints: bool = True) -> list[Capture]:
    """The endpoints' captures (unless they are taken in a guest) and each slot's."""
    caps = _endpoint_captures(bed, out_dir) if endpoints else []
    for slot in bed.topology.slots:
        for end in bed.topology.interfaces(slot.name):
            path = os.path.join(out_dir, f"{slot.name}-{end.ifname}.pcap")
            caps.append(Capture(bed.ns(slot.name), end.ifname, path, snaplen=_snaplen(bed)))
    return caps


MOMENTS = ("connect", "subflows")  # timings that are moments (the others are durations)
PREAMBLE = {"c>s": b"\x01", "s>c": b"\x02"}


def _preamble(client: socket.socket, server: socket.socket, timeout: float) -> dict[str, Any]:
    """One byte each way before the measured transfer (Linux opens further subflows only once
    data went both ways); these bytes count in the data facts like any others."""
    out: dict[str, Any] = {"ok": True}
    for direction, sender, receiver in (("c>s", client, server), ("s>c", server, client)):
        byte = PREAMBLE[direction]
        try:
            sender.settimeout(timeout)
            receiver.settimeout(timeout)
            sender.sendall(byte)
            got = receiver.recv(1)
        except OSError as e:
            out.update(ok=False, error=f"{type(e).__name__}: {e.strerror or e}")
            out[direction] = {"sent": 1, "received": 0, "intact": False}
            return out
        out[direction] = {"sent": 1, "received": len(got), "intact": got == byte}
        if got != byte:
            out.update(ok=False, error="the preamble byte arrived changed or not at all")
    return out


class StallJudge:
    """Decides from the senders' own state whether a quiet transfer is stalled, and keeps
    the evidence it decided on."""

    def __init__(self, bed: Testbed, ends: dict[str, tuple[socket.socket, str]]):
        self.bed, self.ends = bed, ends  # direction -> (sending socket, its node)
        self.baseline: dict[str, dict[str, int]] = {}
        self.last_quiet = 0.0
        self.evidence: dict[str, Any] = {}

    def __call__(self, direction: str, quiet: float) -> str | None:
        sock, node = self.ends[direction]
        if quiet < self.last_quiet or node not in self.baseline:  # a new quiet period
            self.baseline[node] = counters.read_host(self.bed.ns(node))
        self.last_quiet = quiet
        try:
            infos = sockets.transport_infos(sock)
            info = sockets.mptcp_info(sock)
        except OSError:
            return None
        host = counters.read_host(self.bed.ns(node))
        refused = sum(
            host.get(name, 0) - self.baseline[node].get(name, 0)
            for name in ("Ip.FragFails", "Ip6.FragFails")
        )
        rto = max((i["rto_us"] for i in infos), default=200_000) / 1e6
        backoff = max((i["backoff"] for i in infos), default=0)
        probes = max((i["probes"] for i in infos), default=0)
        in_flight = sum(i["unacked"] for i in infos)
        unsent = 0 if info is None else (info["write_seq"] - info["snd_una"]) & (2**64 - 1)
        why = None
        if backoff >= 3:
            why = f"the {node}'s retransmissions went unanswered over {backoff} RTO backoffs"
        elif refused and quiet >= max(7 * rto, 1.5):  # as long as three backoffs would take
            why = (
                f"the {node}'s segments were refused locally {refused} times in {quiet:.1f} s "
                "(larger than the path MTU): they never leave the host"
            )
        elif probes >= 3:
            why = f"the receiver's window stayed closed over {probes} zero-window probes"
        elif in_flight == 0 and unsent and quiet >= 3.0:
            why = (
                f"the {node}'s MPTCP socket holds {unsent} unacknowledged bytes but no "
                f"subflow has data in flight for {quiet:.1f} s"
            )
        if why is None:
            quiet_enough = quiet >= max(3 * rto, 0.6)
            if in_flight == 0 and not unsent and not probes and not refused and quiet_enough:
                return DRAINED  # sent and acknowledged: what did not arrive never will
            return None
        self.evidence = {
            "direction": direction,
            "sender": node,
            "quiet_seconds": round(quiet, 3),
            "subflows": infos,
            "host_counters": {k: v - self.baseline[node].get(k, 0) for k, v in host.items()},
            "mptcp_unacked_bytes": unsent,
        }
        return why


def _withhold_announcements(bed: Testbed) -> list[dict]:
    """The server's signal endpoints, removed until data has flowed (announce = late)."""
    ns = bed.server_ns
    signal = [e for e in pm.endpoints(ns) if e.get("flags", 0) & pm.EndpointFlag.SIGNAL]
    for endpoint in signal:
        pm.delete_endpoint(ns, endpoint["id"])
    return signal


def _announce(bed: Testbed, endpoints: list[dict], before: dict) -> dict[str, Any]:
    """Put the signal endpoints back: the server announces them on the running connection."""
    ns = bed.server_ns
    started = time.monotonic()
    for e in endpoints:
        pm.add_endpoint(ns, e.get("addr4") or e.get("addr6"), e["id"], e["flags"], e.get("port"))
    _announcement_left(bed, before, bound=2.0)
    return {"endpoints": len(endpoints), "after_seconds": round(time.monotonic() - started, 3)}


def _announcement_left(bed: Testbed, before: dict, bound: float) -> bool:
    """Whether the server's AddAddrTx counter moved past ``before`` within ``bound``."""
    sent = before[bed.topology.server.name].get("AddAddrTx", 0)
    end = time.monotonic() + bound
    while time.monotonic() < end:
        if counters.read(bed.server_ns).get("AddAddrTx", 0) > sent:
            return True
        time.sleep(0.002)
    return False


def _await_announcement(bed: Testbed, before: dict, bound: float = 1.0) -> dict[str, Any]:
    """Wait until the server's announcement has left before the client sends data: Linux
    sends ADD_ADDR from a worker right after the handshake, which usually beats the first
    data but not always, and what a middlebox meets first must not depend on that race."""
    started = time.monotonic()
    left = _announcement_left(bed, before, bound)
    return {"before_data": left, "after_seconds": round(time.monotonic() - started, 4)}


def _hold(bed: Testbed, config: RunConfig, before: dict) -> dict[str, Any]:
    """Keep the connection open, idle, until the counters say the awaited event happened or
    the hold time is over."""
    started = time.monotonic()
    met = not config.hold_until
    while time.monotonic() - started < config.hold:
        signals.check()
        met = all(
            counters.read(bed.ns(node)).get(name, 0) - before[node].get(name, 0) >= count
            for node, wanted in config.hold_until.items()
            for name, count in wanted.items()
        )
        if met and config.hold_until:
            break
        time.sleep(0.05)
    return {"seconds": round(time.monotonic() - started, 3), "until": config.hold_until, "met": met}


def _stats(log_path: str) -> dict[str, Any]:
    """What the middlebox counted (written when it stopped): packets seen, changes made."""
    try:
        with open(log_path + ".stats.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run_traffic(bed: Testbed, config: RunConfig, out_dir: str) -> dict[str, Any]:
    """Connect, wait for the subflows, transfer, and record everything seen. With the
    endpoints in a VM, their part runs in the guest (``guest_part``), the rest here."""
    os.makedirs(out_dir, exist_ok=True)
    topo = bed.topology
    server_address = topo.addresses(topo.server.name, config.ip_version)[0]
    timings: dict[str, float] = {"build": round(bed.build_seconds, 4)}
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "mbtest": __version__,
        "kernel": os.uname().release,
        "environment": environment.host(),
        "run_id": bed.run_id,
        "topology": {
            "name": topo.name,
            "params": topo.params,
            "nodes": {n: bed.ns(n) for n in topo.nodes},
        },
        "config": asdict(config),
        "server_address": server_address,
        "expected_subflows": expected_subflows(topo, config.ip_version),
    }
    start = time.monotonic()
    in_guest = bed.vm is not None
    with contextlib.ExitStack() as stack:
        wanted = _captures(bed, out_dir, endpoints=not in_guest) if config.capture else []
        caps = stack.enter_context(capturing(wanted))
        timings["captures_ready"] = round(time.monotonic() - start, 4)
        began = time.monotonic() - start
        part = guest_part(bed, config, out_dir) if in_guest else endpoint_part(bed, config)
        for name, seconds in part.pop("timings").items():  # moments made the run's
            timings[name] = round(seconds + (began if name in MOMENTS else 0.0), 4)
        doc["kernel"] = part.pop("kernel")
        doc["environment"]["nodes"] = part.pop("nodes")
        guest_captures = part.pop("captures", {})
        doc.update(part)
        crashed = bed.check_middleboxes()
        # The run is over. The middleboxes serve the closing handshakes for a moment more
        # (their settle time) while they reach the captures; then everything ends at once.
        bed.ask_middleboxes_to_stop()
        time.sleep(0.05)
        for capture in caps:
            capture.interrupt()
        bed.stop_middleboxes()  # (logs complete, counts written)
    doc["middleboxes"] = {
        slot: {
            "behaviour": p.spec.text,
            "name": p.spec.name,
            "passive": p.spec.behaviour_class.PASSIVE,
            "log": os.path.relpath(p.log_path, out_dir)
            if p.log_path.startswith(out_dir)
            else p.log_path,
            "crashed": crashed.get(slot),
            **_stats(p.log_path),
        }
        for slot, p in bed.processes.items()
    }
    doc["captures"] = {
        **guest_captures,
        **{
            os.path.basename(c.path): {"namespace": c.ns, "interface": c.interface, **c.stats}
            for c in caps
        },
    }
    if config.capture and config.decode:
        doc["timelines"] = {
            name: timeline.from_capture(os.path.join(out_dir, name)) for name in doc["captures"]
        }
    timings["total"] = round(time.monotonic() - start, 4)
    doc["timings"] = timings
    with open(os.path.join(out_dir, "run.json"), "w") as f:
        f.write(jsondoc.dumps(doc, indent=2))
    return doc


def endpoint_part(bed: Testbed, config: RunConfig, out_dir: str | None = None) -> dict[str, Any]:
    """The endpoints' part of a run, where the endpoints are: the kernel and its sysctls,
    connect, subflows, transfer, hold, what the sockets and counters say, the sockets
    closed. With ``out_dir`` (in a guest) the endpoints' captures are taken here too."""
    topo = bed.topology
    family = socket.AF_INET if config.ip_version == 4 else socket.AF_INET6
    server_address = topo.addresses(topo.server.name, config.ip_version)[0]
    part: dict[str, Any] = {
        "kernel": os.uname().release,
        "nodes": {  # what each endpoint's namespace ran with (checksums, timers...)
            node: netns.call_in(bed.ns(node), environment.mptcp_sysctls)
            for node in (topo.client.name, topo.server.name)
        },
    }
    timings: dict[str, float] = {}  # MOMENTS from the part's start; durations
    start = time.monotonic()
    with contextlib.ExitStack() as stack:
        wanted = _endpoint_captures(bed, out_dir) if out_dir and config.capture else []
        caps = stack.enter_context(capturing(wanted))
        hosts = (topo.client.name, topo.server.name, *(b.name for b in topo.backends))
        before = {side: counters.read(bed.ns(side)) for side in hosts}
        host_before = {side: counters.read_host(bed.ns(side)) for side in hosts}
        listener = sockets.mptcp_socket(bed.server_ns, family)
        stack.callback(listener.close)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::" if config.ip_version == 6 else "0.0.0.0", config.port))
        listener.listen(8)
        listener.settimeout(config.connect_timeout)
        for backend in topo.backends:  # other servers listen too (a load balancer may pick them)
            other = sockets.mptcp_socket(bed.ns(backend.name), family)
            stack.callback(other.close)
            other.bind(("::" if config.ip_version == 6 else "0.0.0.0", config.port))
            other.listen(8)
        late = _withhold_announcements(bed) if config.announce == "late" else []
        client = sockets.mptcp_socket(bed.client_ns, family)
        stack.callback(client.close)
        # the initial subflow leaves from the client's first address, as the topology says
        # (IPv6 source selection would pick the newest address of a link instead)
        client.bind((topo.addresses(topo.client.name, config.ip_version)[0], 0))
        client.settimeout(config.connect_timeout)
        server = None
        try:
            client.connect((server_address, config.port))
            server, _ = listener.accept()
            stack.callback(server.close)
        except OSError as e:
            part["connect"] = {"ok": False, "error": f"{type(e).__name__}: {e.strerror or e}"}
        timings["connect"] = time.monotonic() - start
        if server is not None:
            part["connect"] = {"ok": True}
            at_start = config.announce == "at-start" and signalled(topo, config.ip_version)
            if at_start and sockets.mptcp_info(client) is not None:
                part["announced"] = _await_announcement(bed, before)  # (not after a fallback)
            # Linux opens further subflows once the connection is fully established, which
            # takes data both ways: a one-byte exchange, then the wait for the subflows.
            part["preamble"] = _preamble(client, server, config.connect_timeout)
            if late:
                part["announced"] = _announce(bed, late, before)
            part["subflow_wait"] = _await_subflows(
                bed,
                client,
                expected_subflows(topo, config.ip_version),
                before[topo.client.name],
                config.join_wait,
            )
            timings["subflows"] = time.monotonic() - start
            block = (
                (config.text.encode() * (65536 // max(1, len(config.text)) + 1))
                if config.text
                else BLOCK
            )
            ends = {"c>s": (client, topo.client.name), "s>c": (server, topo.server.name)}
            judge = StallJudge(bed, ends) if config.evidence else None
            result = transfer(
                client,
                server,
                config.c2s_bytes,
                config.s2c_bytes,
                config.stall_timeout,
                config.deadline,
                block,
                config.chunk,
                judge=judge,
            )
            part["transfer"] = result.to_json()
            if judge is not None and result.stalled:
                part["transfer"]["stall_evidence"] = judge.evidence
            timings["transfer"] = result.seconds  # (a duration, as hold's)
            if config.hold:
                part["hold"] = _hold(bed, config, before)
                timings["hold"] = part["hold"]["seconds"]
            part["sockets"] = {
                "client": sockets.socket_report(client),
                "server": sockets.socket_report(server),
            }
        after = {side: counters.read(bed.ns(side)) for side in before}
        part["counters"] = {side: counters.delta(before[side], after[side]) for side in before}
        # which counters each kernel has: one it lacks is unknown, not zero (facts.Counted)
        part["counters_known"] = {side: sorted(after[side]) for side in after}
        host_after = {side: counters.read_host(bed.ns(side)) for side in host_before}
        part["host_counters"] = {
            side: counters.delta(host_before[side], host_after[side]) for side in host_before
        }
        for sock in (client, server):
            if sock is not None:
                sock.close()
        if caps:  # (in a guest) the closing handshakes reach the captures, then they end
            time.sleep(0.1)
            for capture in caps:
                capture.interrupt()
    if caps:
        part["captures"] = {
            os.path.basename(c.path): {
                "namespace": c.ns, "interface": c.interface, "guest": part["kernel"], **c.stats
            }
            for c in caps
        }  # fmt: skip
    part["timings"] = timings
    return part


def guest_part(bed: Testbed, config: RunConfig, out_dir: str) -> dict[str, Any]:
    """The endpoints' part run by the guest's agent (``endpoint_part`` there), its
    captures brought into ``out_dir``; the run document says which guest and VM ran it."""
    job = {**bed.guest_job(), "kind": "cell", "config": config}
    warm = bed.vm.cells > 0
    bound = config.connect_timeout * 2 + config.join_wait + config.deadline + config.hold + 30
    result, folder = bed.vm.call(job, bound)
    part = result["part"]
    for name in part.get("captures", {}):
        shutil.move(str(folder / name), os.path.join(out_dir, name))
    shutil.rmtree(folder, ignore_errors=True)
    part["guest"] = {
        "kernel": bed.vm.release,
        "vm": "warm" if warm else "cold",
        "boot_seconds": bed.vm.booted_seconds,
        "nodes": sorted(bed.vm_nodes),
    }
    return part


def run_on_topology(
    topo: Topology, config: RunConfig, middleboxes: dict, out_dir: str, **testbed: Any
) -> dict[str, Any]:
    """Build the topology with these middleboxes, run traffic, tear it down: the run document."""
    with Testbed(
        topo,
        ip_version=config.ip_version,
        checksums=config.checksums,
        middleboxes=middleboxes,
        log_dir=out_dir,
        **testbed,
    ) as bed:
        return run_traffic(bed, config, out_dir)
