"""Run traffic between the real kernel MPTCP client and server of a testbed, and gather the
evidence into one schema-versioned JSON document: counters, socket info, hashes, captures,
decoded timelines and timings."""

from __future__ import annotations

import contextlib
import json
import os
import socket
import time
from dataclasses import asdict, dataclass
from typing import Any

from mbtest import __version__
from mbtest.endpoints import sockets
from mbtest.endpoints.traffic import BLOCK, transfer
from mbtest.observe import counters, timeline
from mbtest.observe.capture import Capture, capturing
from mbtest.testbed.builder import Testbed
from mbtest.testbed.topology import Topology

SCHEMA = "mbtest.run/1"
PORT = 18080


@dataclass
class RunConfig:
    ip_version: int = 4
    checksums: bool = False
    c2s_bytes: int = 1_000_000
    s2c_bytes: int = 1_000_000
    connect_timeout: float = 5.0
    join_wait: float = 2.0  # how long to wait for the expected subflows before sending
    stall_timeout: float = 5.0
    deadline: float = 60.0
    capture: bool = True
    decode: bool = True
    text: str | None = None  # send this text repeated instead of random bytes
    port: int = PORT  # the server's port (21 for the FTP ALG's control connection)
    chunk: int = 65536  # largest write; small ones (with TCP_NODELAY) make small segments


def expected_subflows(topo: Topology, ip_version: int) -> int:
    """Additional subflows the in-kernel path manager should open, from the topology."""
    client, server = topo.client, topo.server
    own = sum(1 for e in client.endpoints if "subflow" in e.flags and e.version == ip_version)
    announced = sum(1 for e in server.endpoints if "signal" in e.flags and e.version == ip_version)
    accepted = min(announced, client.limits.get("add_addr_accepted", 0))
    return min(own + accepted, client.limits.get("subflows", 2))


def _captures(bed: Testbed, out_dir: str) -> list[Capture]:
    snaplen = 4096 if bed.wire_segments else 0
    caps = []
    for node in (bed.topology.client, bed.topology.server):
        path = os.path.join(out_dir, f"{node.name}.pcap")
        caps.append(Capture(bed.ns(node.name), "any", path, snaplen=snaplen))
    for slot in bed.topology.slots:
        for end in bed.topology.interfaces(slot.name):
            path = os.path.join(out_dir, f"{slot.name}-{end.ifname}.pcap")
            caps.append(Capture(bed.ns(slot.name), end.ifname, path, snaplen=snaplen))
    return caps


def _preamble(client: socket.socket, server: socket.socket, timeout: float) -> dict[str, Any]:
    """One byte each way before the measured transfer; its failure is evidence too."""
    try:
        for sender, receiver, byte in ((client, server, b"\x01"), (server, client, b"\x02")):
            sender.settimeout(timeout)
            receiver.settimeout(timeout)
            sender.sendall(byte)
            if receiver.recv(1) != byte:
                return {"ok": False, "error": "the preamble byte arrived changed or not at all"}
    except OSError as e:
        return {"ok": False, "error": f"{type(e).__name__}: {e.strerror or e}"}
    return {"ok": True}


def _stats(log_path: str) -> dict[str, Any]:
    """What the middlebox counted (written when it stopped): packets seen, changes made."""
    try:
        with open(log_path + ".stats.json") as f:
            return json.load(f)
    except (OSError, ValueError):
        return {}


def run_traffic(bed: Testbed, config: RunConfig, out_dir: str) -> dict[str, Any]:
    """Connect, wait for the subflows, transfer, and record everything seen."""
    os.makedirs(out_dir, exist_ok=True)
    topo = bed.topology
    family = socket.AF_INET if config.ip_version == 4 else socket.AF_INET6
    server_address = topo.addresses(topo.server.name, config.ip_version)[0]
    timings: dict[str, float] = {"build": round(bed.build_seconds, 4)}
    doc: dict[str, Any] = {
        "schema": SCHEMA,
        "mbtest": __version__,
        "kernel": os.uname().release,
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
    with contextlib.ExitStack() as stack:
        caps = stack.enter_context(capturing(_captures(bed, out_dir) if config.capture else []))
        timings["captures_ready"] = round(time.monotonic() - start, 4)
        hosts = (topo.client.name, topo.server.name, *(b.name for b in topo.backends))
        before = {side: counters.read(bed.ns(side)) for side in hosts}
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
        client = sockets.mptcp_socket(bed.client_ns, family)
        stack.callback(client.close)
        client.settimeout(config.connect_timeout)
        server = None
        try:
            client.connect((server_address, config.port))
            server, _ = listener.accept()
            stack.callback(server.close)
        except OSError as e:
            doc["connect"] = {"ok": False, "error": f"{type(e).__name__}: {e.strerror or e}"}
        timings["connect"] = round(time.monotonic() - start, 4)
        if server is not None:
            doc["connect"] = {"ok": True}
            # Linux opens further subflows once the connection is fully established, which
            # takes data both ways: a one-byte exchange, then the wait for the subflows.
            doc["preamble"] = _preamble(client, server, config.connect_timeout)
            deadline = time.monotonic() + config.join_wait
            while time.monotonic() < deadline:
                info = sockets.mptcp_info(client)
                if info is None or info["subflows"] >= doc["expected_subflows"]:
                    break
                time.sleep(0.01)
            timings["subflows"] = round(time.monotonic() - start, 4)
            block = (
                (config.text.encode() * (65536 // max(1, len(config.text)) + 1))
                if config.text
                else BLOCK
            )
            result = transfer(
                client,
                server,
                config.c2s_bytes,
                config.s2c_bytes,
                config.stall_timeout,
                config.deadline,
                block,
                config.chunk,
            )
            doc["transfer"] = result.to_json()
            timings["transfer"] = result.seconds
            doc["sockets"] = {
                "client": sockets.socket_report(client),
                "server": sockets.socket_report(server),
            }
        crashed = bed.check_middleboxes()
        after = {side: counters.read(bed.ns(side)) for side in before}
        doc["counters"] = {side: counters.delta(before[side], after[side]) for side in before}
        for sock in (client, server):
            if sock is not None:
                sock.close()
        time.sleep(0.05)  # the closing handshakes reach the captures
        bed.stop_middleboxes()  # the run is over: logs complete, counts written
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
        os.path.basename(c.path): {"namespace": c.ns, "interface": c.interface, **c.stats}
        for c in caps
    }
    if config.capture and config.decode:
        doc["timelines"] = {
            name: timeline.from_capture(os.path.join(out_dir, name)) for name in doc["captures"]
        }
    timings["total"] = round(time.monotonic() - start, 4)
    doc["timings"] = timings
    with open(os.path.join(out_dir, "run.json"), "w") as f:
        json.dump(doc, f, indent=2)
    return doc


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
