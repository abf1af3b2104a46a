"""Build a topology as network namespaces, and own everything built until it is torn down.

``with Testbed(topology) as bed:`` builds and always tears down: on success, on an
exception, on Ctrl-C and (since the CLI turns SIGTERM into an exception) on SIGTERM. Its
owner record names each namespace before it is created, so what a SIGKILL leaves is found
by ``mbtest cleanup``.
"""

from __future__ import annotations

import contextlib
import ipaddress
import json
import os
import shutil
import time
from dataclasses import dataclass, field
from typing import Any

from mbtest.endpoints import pm
from mbtest.errors import EnvironmentProblem, MbtestError
from mbtest.host import links, netns, owners, signals
from mbtest.host.netfilter import RuleOwner
from mbtest.middlebox.process import MiddleboxProcess
from mbtest.middlebox.spec import MiddleboxSpec
from mbtest.testbed.topology import GUEST_ROLES, Topology

FORWARDER_SYSCTLS = {
    "net.ipv4.ip_forward": "1",
    "net.ipv6.conf.all.forwarding": "1",
    "net.ipv4.icmp_ratelimit": "0",  # every expired probe gets its ICMP answer
    "net.ipv6.icmp.ratelimit": "0",
    "net.ipv4.icmp_msgs_per_sec": "100000",  # (the namespace-wide limit, IPv6's too: only a
    "net.ipv4.icmp_msgs_burst": "10000",  # router asked to rate-limit does; see internet.py)
}
COMMON_SYSCTLS = {
    "net.ipv4.conf.all.rp_filter": "0",  # paths are asymmetric by design
    "net.ipv4.conf.default.rp_filter": "0",
    "net.ipv6.conf.all.accept_dad": "0",
    "net.ipv6.conf.default.accept_dad": "0",
}


def check_mptcp() -> None:
    """Root, and a kernel with MPTCP enabled, or one clear sentence."""
    netns.require_root()
    try:
        with open("/proc/sys/net/mptcp/enabled") as f:
            enabled = f.read().strip() == "1"
    except FileNotFoundError:
        raise EnvironmentProblem(
            "this kernel has no MPTCP support (no /proc/sys/net/mptcp)"
        ) from None
    if not enabled:
        raise EnvironmentProblem(
            "MPTCP is disabled on this machine: run sysctl -w net.mptcp.enabled=1"
        )


def endpoint_kernel(topo: Topology, wanted: str = "host") -> str | None:
    """The kernel the run's endpoints run on: ``wanted`` (--kernel), else the one the
    topology names for them, else None (the host's). A run drives both of its sockets from
    one process, so the endpoints share one kernel: one sentence if the topology mixes."""
    if wanted != "host":
        return wanted
    chosen = {n.name: n.kernel for n in topo.nodes.values() if n.role in GUEST_ROLES}
    if len(set(chosen.values())) > 1:
        said = ", ".join(f"{node} on {kernel or 'host'}" for node, kernel in chosen.items())
        raise MbtestError(
            f"{topo.name} puts its endpoints on different kernels ({said}): a run drives "
            "both ends from one process, so they share one (topo up can mix them)"
        )
    return next(iter(chosen.values()), None)


@dataclass
class Testbed:
    topology: Topology
    run_id: str = field(default_factory=owners.new_run_id)
    ip_version: int = 4  # which MPTCP endpoints of the file are installed
    checksums: bool | None = None  # None: the kernel's default
    persistent: bool = False  # topo up: keep it when the with-block ends
    middleboxes: dict[str, MiddleboxSpec | str] = field(default_factory=dict)  # slot -> spec
    log_dir: str | None = None  # where middleboxes write their ground-truth logs
    wire_segments: bool = True  # no TSO/GSO/GRO: everything sees MTU-sized packets
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> extra sysctls
    processes: dict[str, MiddleboxProcess] = field(default_factory=dict)
    listeners: list = field(default_factory=list)  # the targets' listener processes
    namespaces: dict[str, str] = field(default_factory=dict)  # node -> namespace
    build_seconds: float = 0.0
    truth_path: str | None = None  # a generated topology's ground truth, once written
    static_neighbours: bool | None = None  # None: for topologies with targets (hundreds of nodes)
    guests: dict[str, str] = field(default_factory=dict)  # topo up: these nodes in a VM
    listen_port: int | None = None  # topo up: what a server in the VM listens on (MPTCP)
    kernel: str | None = None  # the endpoints (client, server, backends) in a VM of it
    vm: Any = None  # their EndpointVM: lent by a matrix, or booted (and stopped) here
    guest_nics: dict[str, tuple[str, str]] = field(default_factory=dict)  # mac -> node, name
    own_vm: bool = False  # booted for this testbed (stopped with it), not lent
    owner: owners.Owner | None = None

    def __post_init__(self) -> None:
        if self.static_neighbours is None:
            self.static_neighbours = bool(self.topology.targets)
        self.middleboxes = {
            slot: MiddleboxSpec.parse(spec) for slot, spec in self.middleboxes.items()
        }

    def ns(self, node: str) -> str:
        """The node's namespace (an endpoint in the VM: its namespace inside the guest)."""
        if node in self.vm_nodes and node not in self.namespaces:
            return netns.ns_name(self.run_id, node)
        return self.namespaces[node]

    @property
    def vm_nodes(self) -> set[str]:
        """The endpoints that run in the VM: topo up's ``guests``, else every endpoint
        (client, server, backends) with ``kernel`` or a lent ``vm``."""
        if self.guests:
            return set(self.guests)
        if self.kernel is None and self.vm is None:
            return set()
        return {n.name for n in self.topology.nodes.values() if n.role in GUEST_ROLES}

    @property
    def client_ns(self) -> str:
        return self.ns(self.topology.client.name)

    @property
    def server_ns(self) -> str:
        return self.ns(self.topology.server.name)

    def __enter__(self) -> Testbed:
        try:
            self.build()
        except BaseException:
            self.teardown()
            raise
        return self

    def __exit__(self, *exc) -> None:
        if not self.persistent:
            self.teardown()

    def hand_over(self) -> None:
        """Keep the testbed when its with-block ends (topo up): it becomes the user's, until
        topo down, and cleanup leaves it alone. The command's last step: a signal that came
        before it stops here (the with-block tears down); from here on signals are ignored,
        so none can leave a testbed kept but the command killed (a signal raised after the
        hand-over used to find the testbed already kept: it was left up, unannounced)."""
        signals.check()
        signals.done()
        self.persistent = True
        if self.owner is not None:
            self.owner.persistent = True
            self.owner.save()

    def build(self) -> None:
        check_mptcp()
        start = time.monotonic()
        topo = self.topology
        unknown = sorted(set(self.sysctls) - set(topo.nodes))
        if unknown:
            raise MbtestError(f"sysctls for {unknown[0]}, which is not a node of {topo.name}")
        self.owner = owners.Owner(
            self.run_id, "testbed", persistent=self.persistent, about=self._about()
        )
        local = [node for node in topo.nodes.values() if node.name not in self.vm_nodes]
        for node in local:  # every name is recorded before it exists
            self.owner.namespaces[node.name] = netns.ns_name(self.run_id, node.name)
        self.owner.save()
        kernel = self._guest_kernel()
        if self.vm_nodes and self.vm is None:  # booting meanwhile; waited for below
            from mbtest.testbed.endpointvm import EndpointVM

            self.own_vm = True
            self.vm = EndpointVM.start(kernel, len(self.vm_links()), within=self.owner)
        for node in local:
            signals.check()
            name = netns.ns_name(self.run_id, node.name)
            netns.create(name)
            self.namespaces[node.name] = name
            netns.sysctls(name, self.sysctls_of(node))
        vm_links = self.vm_links()
        for number, link in enumerate(topo.links):
            signals.check()
            macs = _macs(number) if self.static_neighbours else None
            a, b = link.a, link.b
            if link in vm_links:
                continue  # (the VM's taps are lent below)
            links.veth(self.ns(a.node), a.ifname, self.ns(b.node), b.ifname, macs)
        if vm_links:
            if self.own_vm:
                self.vm.wait_ready()
            placement = [(self.ns(host.node), host.ifname) for host, _ in vm_links.values()]
            nic_of = self.vm.lend(placement)
            ends = [guest for _, guest in vm_links.values()]
            self.guest_nics = {m: (ends[i].node, ends[i].ifname) for m, i in nic_of.items()}
        for node in local:  # a node's settings in one visit to its namespace
            signals.check()
            links.batch(self.ns(node.name), lambda node=node: self._configure(node))
        self.start_middleboxes()
        if self.guests:
            self.serve_in_guest()
        self.start_targets()
        self.write_truth()
        self.build_seconds = time.monotonic() - start

    def sysctls_of(self, node) -> dict[str, str]:
        """The node's sysctls: common, by role, the topology's, the run's."""
        sysctls = dict(COMMON_SYSCTLS)
        if node.forwards:
            sysctls.update(FORWARDER_SYSCTLS)
        elif node.role == "backend":
            sysctls["net.mptcp.enabled"] = "1"
        else:
            sysctls["net.mptcp.enabled"] = "1"
            if self.checksums is not None:
                sysctls["net.mptcp.checksum_enabled"] = "1" if self.checksums else "0"
        sysctls.update(node.sysctls)
        sysctls.update(self.sysctls.get(node.name, {}))
        return sysctls

    def vm_links(self) -> dict:
        """The links with an end in the VM, in order: link -> (host's end, guest's end)."""
        inside = self.vm_nodes
        out = {}
        for link in self.topology.links:
            if link.a.node in inside and link.b.node in inside:
                raise MbtestError("two endpoints linked directly cannot share the VM")
            if link.a.node in inside or link.b.node in inside:
                out[link] = (link.b, link.a) if link.a.node in inside else (link.a, link.b)
        return out

    def build_guest_endpoints(self, nics: dict[str, tuple[str, str]]) -> None:
        """(inside the guest, by its agent) The endpoint nodes the host lent NICs for, each
        in a fresh namespace, set up by the same code as on the host: sysctls, the NIC
        (found by hardware address) named as its link end, then ``_configure``."""
        topo = self.topology
        names = sorted({node for node, _ in nics.values()})
        for name in names:
            ns = netns.ns_name(self.run_id, name)
            netns.create(ns)
            self.namespaces[name] = ns
            netns.sysctls(ns, self.sysctls_of(topo.nodes[name]))
        for address, (node, ifname) in nics.items():
            links.adopt(address, self.ns(node), ifname)
        for name in names:
            links.batch(self.ns(name), lambda node=topo.nodes[name]: self._configure(node))

    def _configure(self, node) -> None:
        """Its interfaces (MTU, offloads, addresses), routes, rules, path manager and ICMP,
        from a thread already inside its namespace."""
        ns = self.ns(node.name)
        for number, link in enumerate(self.topology.links):
            for end in link.ends:
                if end.node != node.name:
                    continue
                other = link.b if end is link.a else link.a
                if link.mtu:
                    links.set_mtu(ns, end.ifname, link.mtu)
                if self.wire_segments and other.node not in self.vm_nodes:  # (a tap: none)
                    links.wire_segments(ns, end.ifname)
                for cidr in end.addresses:
                    links.address(ns, end.ifname, cidr)
                if self.static_neighbours:
                    self._write_neighbours(ns, number, link, end)
        for route in node.routes:
            links.route(ns, route.to, route.via, route.table, also=route.also)
        for rule in node.rules:
            links.rule(ns, rule.source, rule.table)
        if node.limits:
            pm.set_limits(
                ns,
                subflows=node.limits.get("subflows", 2),
                add_addr_accepted=node.limits.get("add_addr_accepted", 0),
            )
        for endpoint in node.endpoints:
            if endpoint.version != self.ip_version:
                continue
            flags = 0
            for flag in endpoint.flags:
                flags |= pm.EndpointFlag[flag.upper()]
            pm.add_endpoint(ns, endpoint.address, endpoint.id, flags, endpoint.port)
        if not node.icmp_errors:
            silence_icmp_errors(ns)

    def write_truth(self) -> None:
        """A generated topology's ground truth (ground-truth.json) and its targets, one file
        per IP version (targets-v4.txt, targets-v6.txt: a campaign's input), beside the
        middleboxes' logs."""
        truth = self.topology.truth
        if truth is None:
            return
        folder = self.log_dir or self.owner.state_folder()
        os.makedirs(folder, exist_ok=True)
        self.truth_path = os.path.join(folder, "ground-truth.json")
        with open(self.truth_path, "w") as f:
            json.dump(truth, f, indent=1)
        for version in ("4", "6"):
            lines = [f"{t['address'][version]},{t['port']}" for t in truth["targets"]]
            path = os.path.join(folder, f"targets-v{version}.txt")
            with open(path, "w") as f:
                f.write("\n".join(lines) + "\n")

    def _guest_kernel(self) -> str | None:
        """topo up's guests: the one kernel they run (one sentence for a wrong node)."""
        for node in self.guests:
            if node not in self.topology.nodes:
                raise MbtestError(f"{node} is not a node of {self.topology.name}")
            if self.topology.nodes[node].role not in GUEST_ROLES:
                raise MbtestError(f"only endpoints can run in a guest, not {node}")
        versions = sorted(set(self.guests.values()))
        if len(versions) > 1:
            raise MbtestError(f"a testbed's guests share one VM, so one kernel, not {versions}")
        return versions[0] if versions else self.kernel

    def serve_in_guest(self) -> None:
        """(topo up) The guest endpoints built in the VM and kept, the server listening on
        ``listen_port`` (MPTCP, IPv4 and IPv6) when it is one of them."""
        serves = any(self.topology.nodes[n].role == "server" for n in self.vm_nodes)
        job = {**self.guest_job(), "kind": "serve", "port": self.listen_port if serves else None}
        self.vm.call(job, 60)

    def guest_job(self) -> dict:
        """What the guest's agent needs to build this testbed's endpoints in the VM."""
        return {
            "run_id": self.run_id,
            "topology": self.topology,
            "ip_version": self.ip_version,
            "checksums": self.checksums,
            "sysctls": self.sysctls,
            "wire_segments": self.wire_segments,
            "nics": self.guest_nics,
        }

    def _write_neighbours(self, ns: str, number: int, link, end) -> None:
        """The other end's addresses, with its hardware address, as permanent neighbours."""
        other = link.b if end is link.a else link.a
        mac = _mac_of(number, link, other.node)
        for cidr in other.addresses:
            links.neighbour(ns, end.ifname, str(ipaddress.ip_interface(cidr).ip), mac)

    def start_targets(self) -> None:
        """What answers on each target's port: an MPTCP or a plain TCP listener (a process
        in the target's namespace: removing the namespace ends it), nothing (the kernel
        resets), or a firewall that drops every TCP segment (no answer at all)."""
        from mbtest.endpoints import listener
        from mbtest.endpoints.sockets import IPPROTO_MPTCP

        for node in self.topology.targets:
            signals.check()
            ns = self.ns(node.name)
            if node.listen in ("mptcp", "tcp"):
                protocol = IPPROTO_MPTCP if node.listen == "mptcp" else 0
                self.listeners.append(listener.start(ns, node.port, protocol))
            elif node.listen == "silent":
                netns.call_in(ns, _drop_tcp)

    def slot_sides(self, slot: str) -> dict[str, str]:
        """The slot's interface toward the client and the one toward the server."""
        topo = self.topology
        path = topo.hops_to(topo.client.name, slot)
        previous = path[-2] if len(path) >= 2 else None
        sides = {}
        for link in topo.links:
            for here, there in ((link.a, link.b), (link.b, link.a)):
                if here.node == slot:
                    sides["client" if there.node == previous else "server"] = here.ifname
        return sides

    def _about(self) -> dict:
        return {
            "guests": dict(self.guests),
            "kernel": self.kernel,
            "topology": self.topology.name,
            "params": self.topology.params,
            "ip_version": self.ip_version,
            "middleboxes": {slot: spec.text for slot, spec in self.chosen().items()},
        }

    def chosen(self) -> dict[str, MiddleboxSpec]:
        """The middlebox of each slot: the topology file's, overridden by the run's."""
        chosen = {
            n.name: MiddleboxSpec.parse(n.middlebox) for n in self.topology.slots if n.middlebox
        }
        chosen.update(self.middleboxes)
        return chosen

    def start_middleboxes(self) -> None:
        for slot, spec in self.chosen().items():
            if slot in self.processes:
                continue  # already running
            if slot not in self.topology.nodes or self.topology.nodes[slot].role != "slot":
                slots = ", ".join(n.name for n in self.topology.slots) or "none"
                raise MbtestError(
                    f"{slot} is not a middlebox slot of {self.topology.name} (slots: {slots})"
                )
            log_dir = self.log_dir or self.owner.state_folder()
            os.makedirs(log_dir, exist_ok=True)
            log = os.path.join(log_dir, f"middlebox-{slot}.jsonl")
            process = MiddleboxProcess(self.ns(slot), slot, spec, 0, log, self.slot_sides(slot))
            self.processes[slot] = process
            process.start()

    def replace_middlebox(self, slot: str, spec: str | MiddleboxSpec | None) -> None:
        """Stop the slot's middlebox and start another one (None: leave the slot empty)."""
        if slot in self.processes:
            self.processes.pop(slot).stop()
        self.middleboxes = {s: m for s, m in self.middleboxes.items() if s != slot}
        for node in self.topology.slots:
            if node.name == slot:
                node.middlebox = None
        if spec is not None:
            self.middleboxes[slot] = MiddleboxSpec.parse(spec)
            self.start_middleboxes()

    def stop_middleboxes(self) -> None:
        """Stop every middlebox (each removes its rules, flushes its log, writes its counts),
        all told at once."""
        self.ask_middleboxes_to_stop()
        for process in self.processes.values():
            process.stop()

    def ask_middleboxes_to_stop(self) -> None:
        """Tell every middlebox to stop without waiting (each serves its settle time more)."""
        for process in self.processes.values():
            process.ask_to_stop()

    def check_middleboxes(self) -> dict[str, str]:
        """slot -> why its middlebox stopped, for every one that is no longer running."""
        return {slot: why for slot, p in self.processes.items() if (why := p.check())}

    def teardown(self) -> None:
        """Remove every namespace the record names (killing what runs in it, and the links
        made inside them), the state folder and the record. No signal cuts it
        short: one that arrives meanwhile is raised once everything is gone."""
        with signals.deferred():
            errors = []
            for process in self.processes.values():
                with contextlib.suppress(Exception):
                    process.stop()
            if self.vm is not None:  # its taps home before their namespaces go
                self.vm.give_back()
                if self.own_vm:
                    self.vm.stop()
            names = dict(self.owner.namespaces if self.owner else {}, **self.namespaces)
            for name in reversed(list(names.values())):
                try:
                    netns.remove(name)
                except Exception as e:  # keep removing the rest
                    errors.append(f"{name}: {e}")
            self.namespaces.clear()
            for process in self.listeners:  # (ended with their namespace: reaped here)
                with contextlib.suppress(Exception):
                    process.wait(2)
            self.listeners.clear()
            if self.owner is not None:
                for folder in self.owner.folders:
                    shutil.rmtree(folder, ignore_errors=True)
                if not errors:
                    self.owner.forget()
            if errors:
                raise MbtestError("teardown could not remove " + "; ".join(errors))


SILENCE_RULES = (
    ("iptables", ["-A", "OUTPUT", "-p", "icmp", "--icmp-type", "time-exceeded", "-j", "DROP"]),
    (
        "iptables",
        ["-A", "OUTPUT", "-p", "icmp", "--icmp-type", "destination-unreachable", "-j", "DROP"],
    ),
    ("ip6tables", ["-A", "OUTPUT", "-p", "icmpv6", "--icmpv6-type", "time-exceeded", "-j", "DROP"]),
    (
        "ip6tables",
        ["-A", "OUTPUT", "-p", "icmpv6", "--icmpv6-type", "destination-unreachable", "-j", "DROP"],
    ),
)


def _macs(number: int) -> tuple[str, str]:
    """The two hardware addresses of link ``number`` (locally administered, unique per link)."""
    high, low = divmod(number, 256)
    return f"02:6d:62:{high % 256:02x}:{low:02x}:0a", f"02:6d:62:{high % 256:02x}:{low:02x}:0b"


def _mac_of(number: int, link, node: str) -> str:
    """The hardware address of ``node``'s end of link ``number``."""
    return _macs(number)[0 if link.a.node == node else 1]


def _drop_tcp() -> None:
    """(in a target's namespace) Every TCP segment coming in is dropped: a host that never
    answers, neither SYN/ACK nor RST (the rules go with the namespace)."""
    owner = RuleOwner()
    for tool in ("iptables", "ip6tables"):
        owner.add(tool, ["-A", "INPUT", "-p", "tcp", "-j", "DROP"])


def silence_icmp_errors(ns: str) -> None:
    """Make a router send no ICMP errors, as many Internet routers do (the rules go with
    the namespace)."""

    def install() -> None:
        owner = RuleOwner()
        for tool, args in SILENCE_RULES:
            owner.add(tool, args)

    netns.call_in(ns, install)
