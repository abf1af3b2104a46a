"""A real Linux MPTCP connection that makes the kernel send every option it knows.

Two namespaces joined by two paths. The server signals its second address (ADD_ADDR and its
echo), the client joins it (MP_JOIN SYN, SYN/ACK, ACK), data flows both ways with DSS
mappings (and checksums when asked), the server marks the joined path backup (MP_PRIO) and
then withdraws it (REMOVE_ADDR), and the client closes abortively (MP_FASTCLOSE, MP_TCPRST).
Both sides are captured. This is the ground truth the codec and the crypto are checked on.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import struct
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from mbtest.endpoints import pm
from mbtest.errors import EnvironmentProblem, MbtestError
from mbtest.observe import counters
from mbtest.observe.capture import Capture
from mbtest.testbed import links, netns

IPPROTO_MPTCP = 262
PORT = 18080
CLIENT, SERVER = "client", "server"
# (client address, server address) per path, IPv4 and IPv6.
PATHS = {
    4: (("10.11.0.1", "10.11.0.2"), ("10.12.0.1", "10.12.0.2")),
    6: (("fd00:11::1", "fd00:11::2"), ("fd00:12::1", "fd00:12::2")),
}
PREFIX_LEN = {4: 24, 6: 64}


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


def check_kernel() -> None:
    netns.require_root()
    try:
        with open("/proc/sys/net/mptcp/enabled") as f:
            enabled = f.read().strip() == "1"
    except FileNotFoundError:
        raise EnvironmentProblem("this kernel has no MPTCP (no /proc/sys/net/mptcp)") from None
    if not enabled:
        raise EnvironmentProblem("MPTCP is disabled: set net.mptcp.enabled=1")


@contextlib.contextmanager
def two_path_bed(run_id: str, ip_version: int, checksums: bool) -> Iterator[dict[str, str]]:
    """Client and server namespaces joined by two veth paths; removed on exit, whatever happens."""
    names = {CLIENT: netns.ns_name(run_id, CLIENT), SERVER: netns.ns_name(run_id, SERVER)}
    created: list[str] = []
    try:
        for name in names.values():
            netns.create(name)
            created.append(name)
            netns.sysctl(name, "net.mptcp.enabled", 1)
            netns.sysctl(name, "net.mptcp.checksum_enabled", int(checksums))
        for i, (caddr, saddr) in enumerate(PATHS[ip_version], start=1):
            links.veth(names[CLIENT], f"eth{i}", names[SERVER], f"eth{i}")
            links.address(names[CLIENT], f"eth{i}", f"{caddr}/{PREFIX_LEN[ip_version]}")
            links.address(names[SERVER], f"eth{i}", f"{saddr}/{PREFIX_LEN[ip_version]}")
        second = PATHS[ip_version][1][1]
        pm.set_limits(names[SERVER], subflows=2, add_addr_accepted=0)
        pm.add_endpoint(names[SERVER], second, endpoint_id=2, flags=pm.EndpointFlag.SIGNAL)
        pm.set_limits(names[CLIENT], subflows=2, add_addr_accepted=2)
        yield names
    finally:
        for name in reversed(created):
            netns.remove(name)


def _recv_exact(sock: socket.socket, n: int, deadline: float) -> bytes:
    chunks, got = [], 0
    while got < n:
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        try:
            chunk = sock.recv(min(65536, n - got))
        except TimeoutError:
            raise MbtestError(f"stalled: received {got} of {n} bytes before the deadline") from None
        if not chunk:
            raise MbtestError(f"connection closed after {got} of {n} bytes")
        chunks.append(chunk)
        got += len(chunk)
    return b"".join(chunks)


def _transfer(sender: socket.socket, receiver: socket.socket, data: bytes, timeout: float) -> bytes:
    """Send data one way while receiving it on the other end; both under one deadline."""
    deadline = time.monotonic() + timeout
    sender.setblocking(False)
    received = bytearray()
    view, sent = memoryview(data), 0
    receiver.setblocking(False)
    while len(received) < len(data):
        if time.monotonic() > deadline:
            raise MbtestError(
                f"stalled: {len(received)} of {len(data)} bytes delivered in {timeout:g} s"
            )
        progressed = False
        if sent < len(data):
            with contextlib.suppress(BlockingIOError):
                sent += sender.send(view[sent : sent + 65536])
                progressed = True
        with contextlib.suppress(BlockingIOError):
            chunk = receiver.recv(65536)
            if not chunk:
                raise MbtestError(f"connection closed after {len(received)} of {len(data)} bytes")
            received += chunk
            progressed = True
        if not progressed:
            time.sleep(0.001)
    return bytes(received)


def subflow_count(sock: socket.socket) -> int:
    """mptcpi_subflows (additional subflows) from MPTCP_INFO; -1 when the socket fell back."""
    try:
        info = sock.getsockopt(284, 1, 256)  # SOL_MPTCP, MPTCP_INFO
    except OSError:
        return -1
    return info[0]


def run_exchange(
    out_dir: str,
    ip_version: int = 4,
    checksums: bool = True,
    size: int = 200_000,
    timeout: float = 10.0,
    run_id: str | None = None,
) -> ExchangeResult:
    """Run the exchange, writing client.pcap and server.pcap into out_dir."""
    check_kernel()
    run_id = run_id or netns.new_run_id()
    os.makedirs(out_dir, exist_ok=True)
    family = socket.AF_INET if ip_version == 4 else socket.AF_INET6
    start = time.monotonic()
    steps: list[tuple[str, float]] = []

    def step(name: str) -> None:
        steps.append((name, round(time.monotonic() - start, 4)))

    with two_path_bed(run_id, ip_version, checksums) as names, contextlib.ExitStack() as stack:
        caps = {
            side: stack.enter_context(
                Capture(names[side], "any", os.path.join(out_dir, f"{side}.pcap"))
            )
            for side in (CLIENT, SERVER)
        }
        before = {side: counters.read(names[side]) for side in (CLIENT, SERVER)}
        listener = netns.call_in(
            names[SERVER], socket.socket, family, socket.SOCK_STREAM, IPPROTO_MPTCP
        )
        stack.callback(listener.close)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("::" if ip_version == 6 else "0.0.0.0", PORT))
        listener.listen(4)
        client = netns.call_in(
            names[CLIENT], socket.socket, family, socket.SOCK_STREAM, IPPROTO_MPTCP
        )
        stack.callback(client.close)
        client.settimeout(timeout)
        client.connect((PATHS[ip_version][0][1], PORT))
        listener.settimeout(timeout)
        server, _ = listener.accept()
        stack.callback(server.close)
        step("connected")
        wait_until(lambda: subflow_count(client) >= 1, timeout, "the join to the announced address")
        step("joined")
        c2s, s2c = os.urandom(size), os.urandom(size // 2)
        got_s = _transfer(client, server, c2s, timeout)
        got_c = _transfer(server, client, s2c, timeout)
        sha = lambda b: hashlib.sha256(b).hexdigest()  # noqa: E731
        hashes = {
            "c>s sent": sha(c2s),
            "c>s received": sha(got_s),
            "s>c sent": sha(s2c),
            "s>c received": sha(got_c),
        }
        step("data both ways")
        pm.set_endpoint_flags(names[SERVER], 2, pm.EndpointFlag.SIGNAL | pm.EndpointFlag.BACKUP)
        wait_until(
            lambda: (
                counters.read(names[CLIENT]).get("MPPrioRx", 0) > before[CLIENT].get("MPPrioRx", 0)
            ),
            timeout,
            "MP_PRIO to reach the client",
        )
        step("priority changed")
        pm.delete_endpoint(names[SERVER], 2)
        wait_until(
            lambda: counters.read(names[CLIENT]).get("RmAddr", 0) > before[CLIENT].get("RmAddr", 0),
            timeout,
            "REMOVE_ADDR to reach the client",
        )
        step("address removed")
        more = os.urandom(4096)
        if _transfer(client, server, more, timeout) != more:
            raise MbtestError("data changed after the address removal")
        client.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        client.close()
        wait_until(
            lambda: (
                counters.read(names[SERVER]).get("MPFastcloseRx", 0)
                > before[SERVER].get("MPFastcloseRx", 0)
            ),
            timeout,
            "MP_FASTCLOSE to reach the server",
        )
        step("abortive close")
        time.sleep(0.1)  # let the last packets reach the capture buffers
        deltas = {
            side: counters.delta(before[side], counters.read(names[side]))
            for side in (CLIENT, SERVER)
        }
        paths = {side: cap.stop() for side, cap in caps.items()}
        stats = {side: cap.stats for side, cap in caps.items()}
    return ExchangeResult(run_id, ip_version, checksums, paths, stats, deltas, hashes, steps)
