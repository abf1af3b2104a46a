"""A listening MPTCP server for testbeds brought up by hand (``topo up --listen PORT``): it
accepts connections on every IPv4 and IPv6 address of its node and reads whatever comes,
so that probes (path and conformance) and hand-made traffic have a real Linux endpoint.

It runs in the server's namespace until the testbed goes down: removing the namespace
ends every process inside it, so the testbed's owner record covers it.
"""

from __future__ import annotations

import contextlib
import os
import resource
import select
import selectors
import socket
import time

from mbtest.endpoints.sockets import IPPROTO_MPTCP
from mbtest.errors import MbtestError
from mbtest.host import netns

# beyond this, a new connection is accepted and closed at once (kept below the process's
# descriptor limit, so that accepting never fails for want of descriptors)
MAX_CONNECTIONS = max(16, min(1024, resource.getrlimit(resource.RLIMIT_NOFILE)[0] - 64))
READ_SIZE = 65536


def open_listeners(port: int, protocol: int = IPPROTO_MPTCP) -> list[socket.socket]:
    """Listening sockets (MPTCP, or plain TCP with ``protocol=0``) on port ``port`` for IPv4
    and IPv6, in this namespace, non-blocking."""
    listeners = []
    for family, address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
        sock = socket.socket(family, socket.SOCK_STREAM, protocol)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((address, port))
        sock.listen(128)
        sock.setblocking(False)
        listeners.append(sock)
    return listeners


def serve(listeners: list[socket.socket]) -> int:
    """Accept and read until killed: one thread, a selector, bounded connections."""
    selector = selectors.DefaultSelector()
    for sock in listeners:
        selector.register(sock, selectors.EVENT_READ, "listener")
    open_count = 0
    while True:
        for key, _ in selector.select():
            sock = key.fileobj
            if key.data == "listener":
                conn = accept(sock, open_count < MAX_CONNECTIONS)  # type: ignore[arg-type]
                if conn is not None:
                    selector.register(conn, selectors.EVENT_READ, "connection")
                    open_count += 1
            elif not read_some(sock):  # type: ignore[arg-type]
                selector.unregister(sock)
                sock.close()  # type: ignore[union-attr]
                open_count -= 1


def accept(listener: socket.socket, room: bool) -> socket.socket | None:
    """The next connection, non-blocking; None when there is no room for it (it is closed
    at once) or accepting failed (out of descriptors: a pause rather than a spin)."""
    try:
        conn, _ = listener.accept()
    except OSError:
        time.sleep(0.1)
        return None
    if not room:
        conn.close()
        return None
    conn.setblocking(False)
    return conn


def read_some(conn: socket.socket) -> bool:
    """Read and discard what a connection sent; False once it is over (closed or reset)."""
    try:
        return bool(conn.recv(READ_SIZE))
    except BlockingIOError:
        return True
    except OSError:
        return False


def start(ns: str, port: int, protocol: int = IPPROTO_MPTCP, timeout: float = 5.0) -> netns.Forked:
    """Start the listener (MPTCP, or plain TCP with ``protocol=0``) in namespace ``ns``, in
    a session of its own (it outlives a ``topo up``); its process once it listens, or
    MbtestError saying why not."""
    if not netns.can_fork():
        raise MbtestError("the listener is started from a single-threaded process only")

    def main() -> int:
        try:
            listeners = open_listeners(port, protocol)
        except OSError as e:
            print(f"cannot listen on port {port}: {e.strerror}", flush=True)
            return 1
        print("ready", flush=True)
        devnull = os.open(os.devnull, os.O_WRONLY)  # the starter stops reading: no SIGPIPE
        os.dup2(devnull, 1)
        os.dup2(devnull, 2)
        return serve(listeners)

    proc = netns.Forked(ns, main)
    said = b""
    deadline = time.monotonic() + timeout
    while b"\n" not in said and time.monotonic() < deadline:
        ready, _, _ = select.select([proc.stdout], [], [], deadline - time.monotonic())
        if not ready:
            break
        chunk = os.read(proc.stdout.fileno(), 200)
        if not chunk:
            break
        said += chunk
    proc.stdout.close()
    proc.stderr.close()
    if said.strip() != b"ready":
        with contextlib.suppress(OSError):
            proc.kill()
            proc.wait(timeout)
        why = said.decode(errors="replace").strip() or "it did not start in time"
        raise MbtestError(f"the listener in {ns} did not start: {why}")
    return proc
