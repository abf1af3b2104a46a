"""The engine inside a middlebox process: sets up what the behaviour declares it needs
(queues, kernel rules, an observer, a relay, addresses, sysctls), serves its queues until
told to stop, and removes everything again.

A packet the behaviour cannot read (the project's PacketError or CodecError) is handled per
packet, as the behaviour's ``handle_malformed`` says, and logged as malformed: no packet a
network can send ends the process. Any other exception is a bug in the behaviour: the
process stops and says so, and the testbed reports the middlebox as crashed.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import select
import subprocess
import sys
import time
from typing import Any

from mbtest.errors import MbtestError
from mbtest.host.netfilter import TOOLS, RuleOwner
from mbtest.middlebox import conntrack, native
from mbtest.middlebox.base import KERNEL, NFQUEUE, Behaviour
from mbtest.middlebox.handler import Outcome, PacketHandler
from mbtest.middlebox.inject import Injector
from mbtest.middlebox.log import Log
from mbtest.middlebox.observer import KernelObserver
from mbtest.middlebox.relay import Relay, policy_routing

SETTLE = 0.05  # seconds served after a stop signal: the packets already on their way


class Engine:
    def __init__(self, behaviour: Behaviour, queue: int, log: Log, sides: dict[str, str]):
        self.behaviour, self.queue, self.log, self.sides = behaviour, queue, log, sides
        self.rules = RuleOwner()
        self.handler = PacketHandler(behaviour)
        self.tracker = self.handler.tracker
        self.injector = Injector()
        self.queues: list[Any] = []
        self.stopping = False
        self.wakeup: int | None = None  # readable once a stop signal came (signal.set_wakeup_fd)
        self.failure: BaseException | None = None
        self.packets = 0  # how many packets the engine saw (a passive middlebox changes none)
        self.observer: KernelObserver | None = None
        self.relay: Relay | None = None
        self.events: conntrack.Events | None = None
        self.native: subprocess.Popen | None = None  # the C fast path, when it serves the queue

    # --- setup ------------------------------------------------------------------------------

    def start(self) -> None:
        b = self.behaviour
        if b.NEEDS_EGRESS_MTU:
            b.egress_mtu = self._mtu(self.sides["server"])
        port = b.relay_port()
        if port is not None:
            policy_routing(add=True)
            self.relay = Relay(port, self.log)
            self.relay.start()
        if b.ENGINE == NFQUEUE:
            self._start_queue()
            return
        if b.ENGINE == KERNEL and b.OBSERVE:
            self.observer = KernelObserver(self.log, self.tracker, self.sides)
            self._bind(self.queue, self.on_before)
            before = ["-t", "mangle", "-I", "PREROUTING", "-p", "tcp", "-j", "NFQUEUE"]
            for tool in TOOLS:
                self.rules.add(tool, [*before, "--queue-num", str(self.queue)])
            self.observer.start()
        if b.CONNTRACK_LOG:  # every translated connection as it starts, not one dump at the end
            with open("/proc/sys/net/netfilter/nf_conntrack_events", "w") as f:
                f.write("1")
            self.events = conntrack.Events(self.log.write)
            self.events.start()
        icmp_rules = b.icmp_error_rules(self.sides, self.queue + 1)
        if icmp_rules:
            conntrack.warm()
            self._bind(self.queue + 1, self.on_icmp_error)
            for tool, args in icmp_rules:
                self.rules.add(tool, args)
        for address in b.addresses():
            self.add_address(address)
        for key, value in b.SYSCTLS.items():
            with open("/proc/sys/" + key.replace(".", "/"), "w") as f:
                f.write(value)
        for args in b.kernel_rules(self.sides):
            for tool in TOOLS:
                if _rule_fits(tool, args):
                    self.rules.add(tool, args)

    def _start_queue(self) -> None:
        b = self.behaviour
        command = native.argv(b, self.queue, self.log.path)
        if command is not None:
            self.native = native.start(command)
        else:
            self._bind(self.queue, self.on_packet)
        for match in b.queue_matches():
            for tool in TOOLS:
                rule = ["-t", "mangle", "-A", b.CHAIN, *self._ingress(), "-p", "tcp", *match]
                self.rules.add(tool, [*rule, "-j", "NFQUEUE", "--queue-num", str(self.queue)])

    def _ingress(self) -> list[str]:
        """Queue only packets coming in on the side the behaviour acts on."""
        way = self.behaviour.queued_direction()
        if way == "both":
            return []
        return ["-i", self.sides["client" if way == "c2s" else "server"]]

    @staticmethod
    def _mtu(ifname: str) -> int:
        """(sysfs shows the root namespace's links: ask netlink)"""
        from pyroute2 import IPRoute

        with IPRoute() as ipr:
            (link,) = ipr.get_links(ifname=ifname)
            return link.get_attr("IFLA_MTU")

    def add_address(self, address: str) -> None:
        """An address the slot must own (a NAT pool address), on its server-side interface."""
        from pyroute2 import IPRoute

        ip = ipaddress.ip_address(address)
        with IPRoute() as ipr:
            index = ipr.link_lookup(ifname=self.sides["server"])[0]
            if not ipr.get_addr(index=index, address=str(ip)):
                length = 32 if ip.version == 4 else 128
                family = 2 if ip.version == 4 else 10
                ipr.addr("add", index=index, address=str(ip), prefixlen=length, family=family)

    def _bind(self, number: int, callback) -> None:
        from netfilterqueue import NetfilterQueue

        nfq = NetfilterQueue()
        nfq.bind(number, self._guard(callback), max_len=16384, sock_len=16 << 20)
        self.queues.append(nfq)

    def _guard(self, callback):
        def wrapped(packet) -> None:
            try:
                callback(packet)
            except BaseException as e:  # a behaviour bug (not a bad packet): stop, say so
                packet.accept()
                self.failure = e
                self.stopping = True

        return wrapped

    # --- packets ----------------------------------------------------------------------------

    def on_packet(self, packet) -> None:
        self.packets += 1
        outcome = self.handler(packet.get_payload())
        self.apply(outcome)
        if outcome.action == "drop":
            packet.drop()
        elif outcome.action == "modified" and outcome.packet is not None:
            packet.set_payload(outcome.packet)
            packet.accept()
        else:
            packet.accept()

    def on_before(self, packet) -> None:
        self.packets += 1
        self.observer.before(packet.get_payload())
        packet.accept()

    def on_icmp_error(self, packet) -> None:
        """An ICMP error the behaviour rewrites itself (a NAT keeping quotes)."""
        try:
            out, entry = self.behaviour.handle_icmp_error(
                packet.get_payload(), conntrack.inside_endpoint
            )
        except MbtestError as e:
            self.log.write(
                {
                    "flow": "?",
                    "direction": "?",
                    "field": "malformed",
                    "before": str(e),
                    "after": "passed on",
                }
            )
            packet.accept()
            return
        if out is not None:
            packet.set_payload(out)
        packet.accept()
        if entry is not None:
            self.log.write(entry)

    def apply(self, outcome: Outcome) -> None:
        """Send what an outcome injects and log what it changed."""
        for forged in outcome.inject:
            try:
                self.injector.send(forged)
            except MbtestError as e:  # a packet the behaviour made from a malformed one
                self.log.write(
                    {
                        "flow": "?",
                        "direction": "?",
                        "field": "malformed",
                        "before": str(e),
                        "after": "not injected",
                    }
                )
        for entry in outcome.changes:
            self.log.write(entry)

    # --- loop -------------------------------------------------------------------------------

    def serve(self) -> None:
        """Serve until told to stop, then SETTLE seconds more: the packets already on their
        way (a closing handshake) are still handled as the behaviour says."""
        wake = [self.wakeup] if self.wakeup is not None else []
        fds = {} if self.native is not None else {nfq.get_fd(): nfq for nfq in self.queues}
        tick = self.behaviour.TICK
        until = None  # when serving ends, once told to stop
        while until is None or time.monotonic() < until:
            if until is None and self.stopping:
                until = time.monotonic() + SETTLE
            wait = (tick or 0.2) if until is None else max(0.0, until - time.monotonic())
            ready, _, _ = select.select([*fds, *wake], [], [], wait)
            for fd in ready:
                if fd in fds:
                    fds[fd].run(block=False)
                else:  # the stop signal's byte: read, so that it wakes only once
                    with contextlib.suppress(BlockingIOError, InterruptedError):
                        os.read(fd, 64)
            self.log.flush()
            if self.native is not None:  # the fast path serves the queue; watch that it lives
                if self.native.poll() is not None and not self.stopping:
                    why = self.native.stderr.read().strip() or f"exit {self.native.returncode}"
                    raise MbtestError(f"the native fast path stopped: {why}")
            elif tick:
                self.apply(self.handler.tick(time.monotonic()))
        if self.failure is not None:
            raise MbtestError(f"behaviour {self.behaviour.NAME} failed: {self.failure!r}")

    def stop(self) -> None:
        """Log what only the kernel knows, release the queues, remove the rules: each step
        runs even if an earlier one failed, and a failure is reported on stderr."""
        steps = []
        if self.observer is not None:
            steps.append(self.observer.stop)
        steps += [self.rules.remove_all, self.drain, *(nfq.unbind for nfq in self.queues)]
        if self.observer is not None:
            steps.append(self.observer.log_consumed)
        if self.behaviour.CONNTRACK_LOG:
            steps.insert(0, self.log_conntrack)
        if self.native is not None:  # it drains its queue and writes its own counts
            steps.append(lambda: (self.log.flush(), native.stop(self.native)))
        else:
            steps.append(self.write_stats)
        if self.relay is not None:
            steps += [self.relay.stop, lambda: policy_routing(add=False)]
        steps.append(self.injector.close)
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

    def write_stats(self) -> None:
        malformed = self.handler.malformed + (self.observer.malformed if self.observer else 0)
        with open(self.log.path + ".stats.json", "w") as f:
            json.dump(
                {
                    "packets": self.packets,
                    "changes": self.log.count,
                    "malformed": malformed,
                    "engine": "python",
                },
                f,
            )

    def log_conntrack(self) -> None:
        """NAT's ground truth: the connections still tracked that the events missed."""
        if self.events is None:
            return
        self.events.stop()
        for entry in conntrack.rewrites():
            self.events.add(entry)


def _rule_fits(tool: str, args: list[str]) -> bool:
    """A rule naming an address belongs to iptables (IPv4) or ip6tables (IPv6) only."""
    for i, arg in enumerate(args):
        if arg == "--to-source":
            v6 = ":" in args[i + 1].split("]")[0].lstrip("[") and args[i + 1].count(":") > 1
            return (tool == "ip6tables") == v6
    return True
