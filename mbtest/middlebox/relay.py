"""The relay of a TCP-terminating proxy: connections TPROXY diverts to the slot are accepted
here as plain TCP and re-originated to their original destination."""

from __future__ import annotations

import contextlib
import select
import socket
import threading

IP_TRANSPARENT = 19
IPV6_TRANSPARENT = 75
MARK = 1  # TPROXY marks diverted packets; policy routing delivers them locally
TABLE = 100


class Relay:
    """Accepts diverted connections and relays them to their original destination."""

    def __init__(self, port: int, log, timeout: float = 10.0):
        self.port, self.log, self.timeout = port, log, timeout
        self.stopping = threading.Event()
        self.listeners = []
        for family, any_address in ((socket.AF_INET, "0.0.0.0"), (socket.AF_INET6, "::")):
            sock = socket.socket(family, socket.SOCK_STREAM)  # plain TCP: MPTCP stops here
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if family == socket.AF_INET:
                sock.setsockopt(socket.SOL_IP, IP_TRANSPARENT, 1)
            else:
                sock.setsockopt(socket.IPPROTO_IPV6, IPV6_TRANSPARENT, 1)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((any_address, port))
            sock.listen(64)
            self.listeners.append(sock)
        self.thread = threading.Thread(target=self.serve, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def serve(self) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select(self.listeners, [], [], 0.2)
            for listener in ready:
                conn, peer = listener.accept()
                threading.Thread(target=self.relay, args=(conn, peer), daemon=True).start()

    def relay(self, client: socket.socket, peer) -> None:
        original = client.getsockname()[:2]  # TPROXY keeps the original destination
        try:
            upstream = socket.create_connection(original, timeout=self.timeout)
        except OSError as e:
            flow = f"{peer[0]}:{peer[1]} > {original[0]}:{original[1]}"
            entry = {"flow": flow, "direction": "c>s", "field": "connection"}
            self.log.write({**entry, "before": "MPTCP from the client", "after": f"refused: {e}"})
            client.close()
            return
        local = upstream.getsockname()
        flow = f"{peer[0]}:{peer[1]} > {original[0]}:{original[1]}"
        self.log.write(
            {
                "flow": flow,
                "direction": "c>s",
                "field": "connection",
                "before": f"{peer[0]}:{peer[1]} (terminated at the proxy)",
                "after": f"{local[0]}:{local[1]} (plain TCP from the proxy)",
            }
        )
        pairs = {client: upstream, upstream: client}
        with contextlib.suppress(OSError), client, upstream:
            open_ends = set(pairs)
            while open_ends and not self.stopping.is_set():
                ready, _, _ = select.select(list(open_ends), [], [], 0.2)
                for sock in ready:
                    data = sock.recv(65536)
                    if data:
                        pairs[sock].sendall(data)
                    else:
                        open_ends.discard(sock)
                        with contextlib.suppress(OSError):
                            pairs[sock].shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        self.stopping.set()
        for sock in self.listeners:
            sock.close()


def policy_routing(add: bool) -> None:
    """Marked packets are delivered locally (to the relay): a rule and a local route."""
    from pyroute2 import IPRoute

    command = "add" if add else "del"
    with IPRoute() as ipr:
        lo = ipr.link_lookup(ifname="lo")[0]
        for family, default in ((socket.AF_INET, "0.0.0.0/0"), (socket.AF_INET6, "::/0")):
            scope = {"scope": 254} if family == socket.AF_INET else {}  # host scope for IPv4
            ipr.rule(command, fwmark=MARK, table=TABLE, family=family)
            ipr.route(
                command, dst=default, type="local", table=TABLE, oif=lo, family=family, **scope
            )
