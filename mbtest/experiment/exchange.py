"""A real Linux MPTCP connection that makes the kernel send every option it knows.

Two namespaces joined by two paths. The server signals its second address (ADD_ADDR and its
echo), the client joins it (MP_JOIN SYN, SYN/ACK, ACK), data flows both ways with DSS
mappings (and checksums when asked), the server marks the joined path backup (MP_PRIO) and
then withdraws it (REMOVE_ADDR), and the client closes abortively (MP_FASTCLOSE, MP_TCPRST).
Both sides are captured. This is the ground truth the codec and the crypto are checked on.
"""

from __future__ import annotations

import contextlib
import os
import socket
import struct
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from mbtest.endpoints import pm, sockets
from mbtest.endpoints.traffic import transfer
from mbtest.errors import MbtestError
from mbtest.host import owners
from mbtest.observe import counters
from mbtest.observe.capture import Capture, capturing
from mbtest.testbed import topology
from mbtest.testbed.builder import Testbed

PORT = 18080
CLIENT, SERVER = "client", "server"
TOPOLOGY = "direct-two-path"
SIGNAL_ENDPOINT_ID = 2


@dataclass
class ExchangeResult:
    run_id: str
    ip_version: int
    checksums: bool
    captures: dict[str, str]  # side -> pcap path
    capture_stats: dict[str, dict[str, int]]  # side -> tcpdump's counts (drops!)
    counters: dict[str, dict[str, int]]  # side -> MPTcpExt deltas
    sha256: dict[str, str] = field(default_factory=dict)  # "c>s sent", "c>s received", ...
    steps: list[tuple[str, float]] = field(default_factory=list)  # (step, seconds since start)


def wait_until(
    predicate: Callable[[], bool], timeout: float, what: str, poll: float = 0.02
) -> None:
    """Poll until predicate() holds; MbtestError naming ``what`` at the deadline."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise MbtestError(f"timed out after {timeout:g} s waiting for {what}")
        time.sleep(poll)


def _counter_grew(ns: str, before: dict[str, int], name: str) -> Callable[[], bool]:
    return lambda: counters.read(ns).get(name, 0) > before.get(name, 0)


def run_exchange(
    out_dir: str,
    ip_version: int = 4,
    checksums: bool = True,
    size: int = 200_000,
    timeout: float = 10.0,
    run_id: str | None = None,
) -> ExchangeResult:
    """Run the exchange, writing client.pcap and server.pcap into out_dir."""
    os.makedirs(out_dir, exist_ok=True)
    family = socket.AF_INET if ip_version == 4 else socket.AF_INET6
    topo = topology.load(TOPOLOGY)
    server_address = topo.addresses(SERVER, ip_version)[0]
    start = time.monotonic()
    steps: list[tuple[str, float]] = []

    def step(name: str) -> None:
        steps.append((name, round(time.monotonic() - start, 4)))

    bed = Testbed(
        topo, run_id=run_id or owners.new_run_id(), ip_version=ip_version, checksums=checksums
    )
    with bed, contextlib.ExitStack() as stack:
        ns = {CLIENT: bed.client_ns, SERVER: bed.server_ns}
        caps = {
            side: Capture(ns[side], "any", os.path.join(out_dir, f"{side}.pcap")) for side in ns
        }
        stack.enter_context(capturing(list(caps.values())))
        before = {side: counters.read(ns[side]) for side in ns}
        listener = sockets.mptcp_socket(ns[SERVER], family)
        stack.callback(listener.close)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::" if ip_version == 6 else "0.0.0.0", PORT))
        listener.listen(4)
        listener.settimeout(timeout)
        client = sockets.mptcp_socket(ns[CLIENT], family)
        stack.callback(client.close)
        client.settimeout(timeout)
        client.connect((server_address, PORT))
        server, _ = listener.accept()
        stack.callback(server.close)
        step("connected")
        wait_until(
            lambda: (sockets.mptcp_info(client) or {}).get("subflows", 0) >= 1,
            timeout,
            "the join to the announced address",
        )
        step("joined")
        result = transfer(client, server, size, size // 2, stall_timeout=timeout, deadline=timeout)
        if not result.intact:
            raise MbtestError(f"the exchange's data did not arrive intact: {result.streams}")
        hashes = {}
        for stream in result.streams:
            hashes[f"{stream['direction']} sent"] = stream["sha256_sent"]
            hashes[f"{stream['direction']} received"] = stream["sha256_received"]
        step("data both ways")
        pm.set_endpoint_flags(
            ns[SERVER], SIGNAL_ENDPOINT_ID, pm.EndpointFlag.SIGNAL | pm.EndpointFlag.BACKUP
        )
        wait_until(
            _counter_grew(ns[CLIENT], before[CLIENT], "MPPrioRx"), timeout, "MP_PRIO at the client"
        )
        step("priority changed")
        pm.delete_endpoint(ns[SERVER], SIGNAL_ENDPOINT_ID)
        wait_until(
            _counter_grew(ns[CLIENT], before[CLIENT], "RmAddr"),
            timeout,
            "REMOVE_ADDR at the client",
        )
        step("address removed")
        if not transfer(client, server, 4096, 0, stall_timeout=timeout, deadline=timeout).intact:
            raise MbtestError("data did not arrive intact after the address removal")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        wait_until(
            _counter_grew(ns[SERVER], before[SERVER], "MPFastcloseRx"),
            timeout,
            "MP_FASTCLOSE at the server",
        )
        step("abortive close")
        time.sleep(0.1)  # let the last packets reach the capture buffers
        deltas = {side: counters.delta(before[side], counters.read(ns[side])) for side in ns}
        paths = {side: cap.stop() for side, cap in caps.items()}
        stats = {side: cap.stats for side, cap in caps.items()}
    return ExchangeResult(bed.run_id, ip_version, checksums, paths, stats, deltas, hashes, steps)
