"""The middlebox process: runs inside a slot's namespace, installs its netfilter rules, serves
its NFQUEUE, writes the ground-truth log, and removes its rules when told to stop.

    python -m mbtest.middlebox.engine SPEC --queue N --log FILE --client-side IF --server-side IF

It prints ``ready`` once every rule is in place; any failure is one line on stderr and a
non-zero exit, which the testbed reports as "middlebox crashed: ...".
"""

from __future__ import annotations

import argparse
import json
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from collections import deque
from typing import Any

from mbtest.errors import MbtestError
from mbtest.middlebox import catalog, icmpquote
from mbtest.middlebox.base import Behaviour, Verdict
from mbtest.middlebox.flows import FlowTracker
from mbtest.netfilter import TOOLS, RuleOwner
from mbtest.packet.edit import TcpPacket


class EgressWatch:
    """Every packet leaving the slot, as it leaves (after NAT, helpers and sequence
    adjustment), handed to a callback: the "after" half of observing a kernel middlebox."""

    PACKET_OUTGOING = 4

    def __init__(self, interfaces: list[str], callback):
        self.callback = callback
        self.sockets = []
        for ifname in interfaces:
            sock = socket.socket(socket.AF_PACKET, socket.SOCK_RAW, socket.htons(0x0003))
            sock.bind((ifname, 0))
            self.sockets.append(sock)
        self.stopping = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def start(self) -> None:
        self.thread.start()

    def run(self) -> None:
        while not self.stopping.is_set():
            ready, _, _ = select.select(self.sockets, [], [], 0.1)
            for sock in ready:
                frame, address = sock.recvfrom(65536)
                if address[2] != self.PACKET_OUTGOING or len(frame) < 14:
                    continue
                if frame[12:14] in (b"\x08\x00", b"\x86\xdd"):
                    self.callback(frame[14:], locally_made=False)

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(2)
        for sock in self.sockets:
            sock.close()


class Log:
    def __init__(self, path: str, behaviour: Behaviour):
        self.file = open(path, "a", buffering=1 << 20)  # noqa: SIM115  (closed in close())
        self.prefix = '{"t": %.6f, "behaviour": ' + json.dumps(behaviour.NAME) + ", "
        self.encode = json.JSONEncoder().encode
        self.count = 0

    def write(self, entry: dict[str, Any]) -> None:
        """Buffered: the serve loop flushes after each burst of packets, close() at the end.
        The constant head of each line is formatted once (every-packet behaviours log a lot)."""
        self.file.write(self.prefix % time.time() + self.encode(entry)[1:] + "\n")
        self.count += 1

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()


class Injector:
    """Sends whole IP packets a behaviour forged (they leave by OUTPUT, never re-queued)."""

    def __init__(self) -> None:
        self.sockets: dict[int, socket.socket] = {}

    def send(self, packet: bytes) -> None:
        version = packet[0] >> 4
        if version not in self.sockets:
            family = socket.AF_INET if version == 4 else socket.AF_INET6
            self.sockets[version] = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
        pkt = TcpPacket(packet)
        self.sockets[version].sendto(packet, (pkt.dst, 0))


class Engine:
    def __init__(self, behaviour: Behaviour, queue: int, log: Log, sides: dict[str, str]):
        self.behaviour, self.queue, self.log, self.sides = behaviour, queue, log, sides
        self.rules = RuleOwner()
        self.tracker = FlowTracker()
        self.injector = Injector()
        self.queues: list[Any] = []
        self.pending: dict[tuple, deque] = {}  # observer: (options before, when seen) per key
        self.stopping = False
        self.failure: BaseException | None = None
        self.packets = 0  # how many packets the engine saw (a passive middlebox changes none)
        self.lock = threading.Lock()  # the egress watch thread shares pending and the tracker
        self.egress: EgressWatch | None = None
        self.native: subprocess.Popen | None = None  # the C fast path, when it serves the queue

    # --- setup ------------------------------------------------------------------------------

    def start(self) -> None:
        from netfilterqueue import NetfilterQueue

        b = self.behaviour
        if hasattr(b, "egress_mtu"):  # (sysfs shows the root namespace: ask netlink)
            from pyroute2 import IPRoute

            with IPRoute() as ipr:
                (link,) = ipr.get_links(ifname=self.sides["server"])
                b.egress_mtu = link.get_attr("IFLA_MTU")
        if b.ENGINE == "proxy":
            from mbtest.middlebox.proxy import Relay, policy_routing

            policy_routing(add=True)
            self.relay = Relay(b.port, self.log)
            self.relay.start()
        if b.ENGINE == "nfqueue":
            native = native_argv(b, self.queue, self.log.file.name)
            if native is not None:
                self.native = start_native(native)
            else:
                self._bind(NetfilterQueue, self.queue, self.on_packet)
            for match in b.queue_matches():
                for tool in TOOLS:
                    rule = ["-t", "mangle", "-A", b.CHAIN, *self._ingress(), "-p", "tcp", *match]
                    self.rules.add(tool, [*rule, "-j", "NFQUEUE", "--queue-num", str(self.queue)])
            return
        if getattr(b, "OBSERVE", False):
            self._bind(NetfilterQueue, self.queue, self.on_before)
            before = ["-t", "mangle", "-I", "PREROUTING", "-p", "tcp", "-j", "NFQUEUE"]
            for tool in TOOLS:
                self.rules.add(tool, [*before, "--queue-num", str(self.queue)])
            # After everything the kernel does on the way out (NAT, helpers, sequence
            # adjustment): the packets as they leave, read from packet sockets.
            self.egress = EgressWatch([self.sides["client"], self.sides["server"]], self.on_after)
            self.egress.start()
        if getattr(b, "keeps_quotes", False):
            self._bind(NetfilterQueue, self.queue + 1, self.on_icmp_error)
            for tool, args in b.icmp_rules(self.sides, self.queue + 1):
                self.rules.add(tool, args)
        for address in getattr(b, "addresses", []):
            self.add_address(address)
        for key, value in getattr(b, "SYSCTLS", {}).items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        for args in b.kernel_rules(self.sides):
            for tool in TOOLS:
                if _rule_fits(tool, args):
                    self.rules.add(tool, args)

    def _ingress(self) -> list[str]:
        """Queue only packets coming in on the side the behaviour acts on."""
        way = self.behaviour.queued_direction()
        if way == "both":
            return []
        return ["-i", self.sides["client" if way == "c2s" else "server"]]

    def add_address(self, address: str) -> None:
        """An address the slot must own (a NAT pool address), on its server-side interface."""
        import ipaddress

        from pyroute2 import IPRoute

        ip = ipaddress.ip_address(address)
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.sides["server"])[0]
            if not ipr.get_addr(index=index, address=str(ip)):
                length = 32 if ip.version == 4 else 128
                ipr.addr(
                    "add",
                    index=index,
                    address=str(ip),
                    prefixlen=length,
                    family=2 if ip.version == 4 else 10,
                )

    def _bind(self, cls, number: int, callback) -> None:
        nfq = cls()
        nfq.bind(number, self._guard(callback), max_len=16384, sock_len=16 << 20)
        self.queues.append(nfq)

    def _guard(self, callback):
        def wrapped(packet) -> None:
            try:
                callback(packet)
            except BaseException as e:  # a behaviour bug: stop and say so
                packet.accept()
                self.failure = e
                self.stopping = True

        return wrapped

    # --- packets ----------------------------------------------------------------------------

    def on_packet(self, packet) -> None:
        self.packets += 1
        try:
            pkt = TcpPacket(packet.get_payload())
        except MbtestError:
            packet.accept()
            return
        ctx = self.tracker.observe(pkt)
        verdict: Verdict = self.behaviour.handle(pkt, ctx)
        self.apply(verdict)
        if verdict.action == "drop":
            packet.drop()
        elif verdict.action == "modified" and verdict.packet is not None:
            packet.set_payload(verdict.packet)
            packet.accept()
        else:
            packet.accept()

    def on_icmp_error(self, packet) -> None:
        """An ICMP error for a translated connection: readdressed, its quote left alone."""
        data = packet.get_payload()
        out = icmpquote.retarget(data, self._inside_endpoint)
        if out is None:
            packet.accept()
            return
        packet.set_payload(out)
        packet.accept()
        quoted = _endpoint(*icmpquote.quoted_source(data))
        self.log.write({"flow": "?", "direction": "s>c", "field": "icmp destination",
                        "before": quoted, "after": "inside host, quote kept"})  # fmt: skip

    def _inside_endpoint(self, outside: tuple[str, int]) -> tuple[str, int] | None:
        """Which inside host and port a translated source address and port stand for."""
        for orig, reply in tracked_tcp():
            if (reply.daddr, reply.dport) == outside:
                return orig.saddr, orig.sport
        return None

    def apply(self, verdict: Verdict) -> None:
        """Send what a verdict injects and log what it changed."""
        for forged in verdict.inject:
            self.injector.send(forged)
        for entry in verdict.changes:
            self.log.write(entry)

    @staticmethod
    def _key(pkt: TcpPacket) -> tuple:
        """What NAT and sequence-adjusting helpers leave alone: the IPv4 ID (unique per
        packet of a flow) and the flags; for IPv6, the flow label and the numbers."""
        if pkt.version == 4:
            return (4, bytes(pkt.buf[4:6]), pkt.flags)
        return (6, bytes(pkt.buf[1:4]), pkt.seq, pkt.ack, pkt.flags)

    def on_before(self, packet) -> None:
        self.packets += 1
        data = packet.get_payload()
        try:
            pkt = TcpPacket(data)
            self.tracker.observe(pkt)
            # pure ACKs often share every number: keep them in arrival order per key
            before = (bytes(pkt.options), bytes(pkt.payload), time.monotonic(), pkt.seq, pkt.ack)
            with self.lock:
                self.pending.setdefault(self._key(pkt), deque()).append(before)
        except MbtestError:
            pass
        if len(self.pending) > 100_000:
            self.pending.clear()
        packet.accept()

    def on_after(self, data: bytes, locally_made: bool) -> None:
        """A packet leaving the slot: compare it with the same packet as it came in."""
        try:
            pkt = TcpPacket(data)
        except MbtestError:
            return
        with self.lock:
            waiting = self.pending.get(self._key(pkt))
            before, payload_before, _, seq, ack = waiting.popleft() if waiting else (None,) * 5
            if waiting is not None and not waiting:
                del self.pending[self._key(pkt)]
            flow, direction = self.tracker.lookup(pkt)
        name = flow.state.get("name", "?") if flow else "?"
        entry = {"flow": name, "direction": direction, "seq": pkt.seq, "flags": pkt.flags}
        if before is None:  # nothing came in like it: the kernel made it (SYNPROXY...)
            sent = f"sent by the kernel: {bytes(pkt.buf).hex()}"
            self.log.write({**entry, "field": "injected", "before": None, "after": sent})
            return
        if before != bytes(pkt.options):
            self.log.write({**entry, "field": "tcp.options (kernel)", "before": before.hex(),
                            "after": bytes(pkt.options).hex()})  # fmt: skip
        for name, old, new in (
            ("tcp.seq (kernel)", seq, pkt.seq),
            ("tcp.ack (kernel)", ack, pkt.ack),
        ):
            if old != new:
                self.log.write({**entry, "field": name, "before": old, "after": new})
        if payload_before != bytes(pkt.payload):
            self.log.write({**entry, "field": "payload (kernel)", "before": payload_before.hex(),
                            "after": bytes(pkt.payload).hex()})  # fmt: skip

    # --- loop -------------------------------------------------------------------------------

    def serve(self) -> None:
        if self.native is not None:  # the fast path serves the queue; watch that it lives
            while not self.stopping and self.native.poll() is None:
                time.sleep(0.1)
            if self.native.poll() is not None and not self.stopping:
                why = self.native.stderr.read().strip() or f"exit {self.native.returncode}"
                raise MbtestError(f"the native fast path stopped: {why}")
            return
        fds = {nfq.get_fd(): nfq for nfq in self.queues}  # run(block=False) never waits
        tick = self.behaviour.TICK
        while not self.stopping:
            if not fds:
                time.sleep(0.2)
                continue
            ready, _, _ = select.select(list(fds), [], [], tick or 0.2)
            for fd in ready:
                fds[fd].run(block=False)
            self.log.flush()
            if tick:
                self.apply(self.behaviour.tick(time.monotonic()))
        if self.failure is not None:
            raise MbtestError(f"behaviour {self.behaviour.NAME} failed: {self.failure!r}")

    def stop(self) -> None:
        """Log what only the kernel knows, release the queues, remove the rules: each step
        runs even if an earlier one failed, and a failure is reported on stderr."""
        time.sleep(0.05)  # the last packets leave
        first = [self.egress.stop] if self.egress is not None else []
        unbind = [nfq.unbind for nfq in self.queues]
        steps = [
            *first,
            self.rules.remove_all,
            self.drain,
            *unbind,
            self.log_consumed,
        ]
        if self.native is not None:  # it drains its queue and writes its own counts
            steps.append(self.stop_native)
        else:
            steps.append(self.write_stats)
        if getattr(self, "relay", None) is not None:
            from mbtest.middlebox.proxy import policy_routing

            steps += [self.relay.stop, lambda: policy_routing(add=False)]
        if getattr(self.behaviour, "CONNTRACK_LOG", False):
            steps.insert(0, self.log_conntrack)
        for step in steps:
            try:
                step()
            except Exception as e:
                print(f"while stopping: {type(e).__name__}: {e}", file=sys.stderr, flush=True)

    def drain(self) -> None:
        """Give a verdict to what is still queued: unbinding would drop it, and the slot's
        captures would then show drops the behaviour never made."""
        for nfq in self.queues:
            nfq.run(block=False)

    def log_consumed(self) -> None:
        """Packets the kernel took in and never forwarded (dropped, or answered itself); the
        last half second's are left out, as they may still have been on their way."""
        settled = time.monotonic() - 0.5
        for key in [k for k, q in self.pending.items() if q and q[0][2] < settled][:1000]:
            seq, flags = self.pending[key][0][3], key[-1]
            entry = {"flow": "?", "direction": "?", "seq": seq, "flags": flags}
            self.log.write({**entry, "field": "packet", "before": "received", "after": "dropped"})
        self.pending.clear()

    def write_stats(self) -> None:
        with open(self.log.file.name + ".stats.json", "w") as f:
            json.dump({"packets": self.packets, "changes": self.log.count, "engine": "python"}, f)

    def stop_native(self) -> None:
        self.log.flush()
        self.native.terminate()
        try:
            self.native.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.native.kill()
            self.native.wait()

    def log_conntrack(self) -> None:
        """NAT's ground truth: each tracked connection whose reply tuple shows a rewrite."""
        for orig, reply in tracked_tcp():
            before = _endpoint(orig.saddr, orig.sport)
            after = _endpoint(reply.daddr, reply.dport)
            if before != after:
                self.log.write({"flow": f"{before} > {_endpoint(orig.daddr, orig.dport)}",
                                "direction": "c>s", "field": "source", "before": before,
                                "after": after})  # fmt: skip


def tracked_tcp():
    """(original, reply) tuples of every tracked TCP connection, IPv4 and IPv6."""
    from pyroute2 import Conntrack

    for family in (socket.AF_INET, socket.AF_INET6):
        with Conntrack(nfgen_family=family) as ct:
            for entry in ct.dump_entries():
                if entry.tuple_orig.proto == socket.IPPROTO_TCP:
                    yield entry.tuple_orig, entry.tuple_reply


def _endpoint(address: str, port: int) -> str:
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


NATIVE = os.path.join(os.path.dirname(os.path.abspath(__file__)), "native", "mbtest-nfq-fast")


def native_argv(behaviour: Behaviour, queue: int, log_path: str) -> list[str] | None:
    """The fast path's command line, when it implements this behaviour and is built (make
    setup builds it; MBTEST_NATIVE=0 keeps the Python engine, the reference)."""
    args = behaviour.native_args()
    if args is None or os.environ.get("MBTEST_NATIVE") == "0" or not os.access(NATIVE, os.X_OK):
        return None
    return [NATIVE, "--queue", str(queue), "--log", log_path, "--behaviour", behaviour.NAME,
            *args]  # fmt: skip


def start_native(argv: list[str], timeout: float = 5.0) -> subprocess.Popen:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline() if ready else ""
    if line.strip() != "ready":
        proc.kill()
        proc.wait()
        why = proc.stderr.read().strip()
        raise MbtestError(f"the native fast path did not start: {why or 'no answer'}")
    return proc


def _rule_fits(tool: str, args: list[str]) -> bool:
    """A rule naming an address belongs to iptables (IPv4) or ip6tables (IPv6) only."""
    for i, arg in enumerate(args):
        if arg == "--to-source":
            v6 = ":" in args[i + 1].split("]")[0].lstrip("[") and args[i + 1].count(":") > 1
            return (tool == "ip6tables") == v6
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mbtest-middlebox")
    parser.add_argument("spec")
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--client-side", default="eth0")
    parser.add_argument("--server-side", default="eth1")
    args = parser.parse_args(argv)
    engine = None
    try:
        behaviour = catalog.build(args.spec)
        engine = Engine(behaviour, args.queue, Log(args.log, behaviour),
                        {"client": args.client_side, "server": args.server_side})  # fmt: skip

        def on_signal(signum, frame) -> None:
            engine.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        engine.start()
        print("ready", flush=True)
        engine.serve()
        return 0
    except MbtestError as e:
        print(str(e), file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # report, never a traceback
        print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if engine is not None:
            try:
                engine.stop()
            finally:
                engine.log.close()


if __name__ == "__main__":
    sys.exit(main())
