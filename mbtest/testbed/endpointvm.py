"""Endpoints on another kernel: one VM holds a testbed's endpoint nodes (client, server,
backends), each in a network namespace of its own inside the guest, built for every cell by
the guest's agent (``python -m mbtest.experiment.guestagent``) with the same code that builds
them on the host. The run's traffic, counters, MPTCP_INFO, stall evidence and endpoint
captures are then taken inside the guest, by the same code too.

The VM's taps live in a namespace its owner holds (the VM's own); for a cell each moves to
where the endpoint's veth end would stand, renamed as that end, and comes back after: a
warm VM serves cell after cell, each with fresh namespaces (clean counters and endpoints).
A VM is reused only when it is known clean: every tap back home, no job left, QEMU alive.

Jobs and results pass through the exchange folder (virtiofs, read-write) as pickles: both
sides run this very code, and the folder is the run's own (root only)."""

from __future__ import annotations

import contextlib
import json
import os
import pickle
import sys
import time
import uuid
from pathlib import Path
from typing import Any

from mbtest.errors import MbtestError
from mbtest.host import datafiles, links, netns, owners, signals, vm
from mbtest.host.kernels import Kernel

READY = "ready"  # written by the agent (its kernel's release) once it takes jobs
BOOT_SECONDS = 120.0  # the bound on a boot under emulation (about 5-9 s here)
LEASE = "vm-lease.json"  # in a cell's folder: the warm VM the matrix lends it


def mac(index: int) -> str:
    """The hardware address of the VM's NIC ``index`` (the guest finds its NICs by it)."""
    return f"02:6d:76:00:{index // 256:02x}:{index % 256:02x}"


def agent_script() -> str:
    """What the guest's init runs: the project's agent, from the host's root (read-only)."""
    root = os.path.dirname(datafiles.shipped())  # (where `import mbtest` finds it)
    code = "from mbtest.experiment import guestagent; guestagent.main('/run/mbtest-guest')"
    return vm.command_script([sys.executable, "-c", code], root)


class EndpointVM:
    """A booted guest of ``kernel`` with ``nics`` NICs, its taps (vm0, vm1...) in namespace
    ``ns``, its files in ``state``. ``owner`` is its own record (a matrix's warm VM); None
    when a testbed's record holds it or a cell borrows it (``from_lease``)."""

    def __init__(self, kernel: Kernel, ns: str, state: Path, nics: int, release: str = ""):
        self.kernel, self.ns, self.state, self.nics = kernel, ns, state, nics
        self.release = release or kernel.release  # what the guest's uname says
        self.exchange = state / "exchange"
        self.owner: owners.Owner | None = None
        self.guest: vm.Guest | None = None
        self.lent: list[tuple[int, str, str]] = []  # (tap index, namespace, name there)
        self.booted_seconds = 0.0
        self.cells = 0  # cells served since it booted

    @property
    def taps(self) -> list[str]:
        return [f"vm{i}" for i in range(self.nics)]

    @classmethod
    def start(
        cls, version: str, nics: int, within: owners.Owner | None = None, memory_mb: int = 512
    ) -> EndpointVM:
        """Boot a guest of cached kernel ``version`` (without waiting: ``wait_ready``):
        its namespace (QEMU and virtiofsd run in it) and folder recorded by ``within``
        (a testbed's record: they go with the testbed, topo down included), else by a
        record of its own (a matrix's warm VM)."""
        from mbtest.host import kernels

        kernel = kernels.find(version)
        vm.tools()
        if within is None:
            record, ns = vm.own_record(kernel, "vm")
        else:
            record, ns = within, netns.ns_name(within.run_id, "vm")
            record.namespaces["vm"] = ns
            record.save()
        self = cls(kernel, ns, Path(record.state_folder()) / "vm", nics)
        self.owner = None if within else record
        self._started = time.monotonic()
        try:
            netns.create(ns)
            for tap in self.taps:
                links.tap(ns, tap)
            nic_list = [(tap, mac(i)) for i, tap in enumerate(self.taps)]
            self.guest = vm.Guest(kernel, ns, self.state, agent_script(), nic_list, memory_mb)
            self.guest.start()
        except BaseException:
            self.stop()
            raise
        return self

    def wait_ready(self) -> None:
        """Until the guest's agent takes jobs; GuestError naming the console's last lines."""
        assert self.guest is not None
        try:
            self.guest.wait_for(READY, BOOT_SECONDS)
        except BaseException:
            self.stop()
            raise
        self.release = (self.exchange / READY).read_text().strip() or self.kernel.release
        self.booted_seconds = round(time.monotonic() - self._started, 3)

    @classmethod
    def boot(cls, version: str, nics: int) -> EndpointVM:
        started = cls.start(version, nics)
        started.wait_ready()
        return started

    # --- lending a warm VM to a cell in another process --------------------------------------

    def lease(self) -> dict[str, Any]:
        return {
            "kernel": self.kernel.release,
            "release": self.release,
            "ns": self.ns,
            "state": str(self.state),
            "nics": self.nics,
            "cells": self.cells,
            "booted_seconds": self.booted_seconds,
        }

    @classmethod
    def from_lease(cls, lease: dict[str, Any]) -> EndpointVM:
        from mbtest.host import kernels

        kernel = kernels.find(lease["kernel"])
        self = cls(kernel, lease["ns"], Path(lease["state"]), int(lease["nics"]), lease["release"])
        self.cells = int(lease.get("cells", 0))
        self.booted_seconds = float(lease.get("booted_seconds", 0.0))
        return self

    def clean(self) -> bool:
        """Whether the VM can serve another cell: QEMU alive, every tap home, no job left
        over (a cell that was killed leaves one, or its taps went with its namespaces)."""
        if not self.running():
            return False
        if (self.state / "dirty").exists() or any(self.exchange.glob("*.job")):
            return False
        if any(self.exchange.glob("*.running")):
            return False
        try:
            present = links.in_namespace(
                self.ns, lambda ipr: {link.get_attr("IFLA_IFNAME") for link in ipr.get_links()}
            )
        except Exception:
            return False
        return set(self.taps) <= present

    # --- a cell -------------------------------------------------------------------------------

    def lend(self, placement: list[tuple[str, str]]) -> dict[str, tuple[int, str]]:
        """Move tap i to ``placement[i]`` (namespace, the host end's name there); the
        guest's side of each: NIC hardware address -> its index (the job names nodes)."""
        if len(placement) > self.nics:
            raise MbtestError(
                f"the VM on {self.release} has {self.nics} NICs; this testbed needs "
                f"{len(placement)}"
            )
        out = {}
        for index, (ns, name) in enumerate(placement):
            self.lent.append((index, ns, name))  # (recorded first: given back on any error)
            links.move(self.ns, self.taps[index], ns, name)
            out[mac(index)] = index
        return out

    def give_back(self) -> None:
        """Every lent tap home again (before its namespace goes: a tap in a namespace that
        is removed is destroyed, and the VM would have lost that NIC)."""
        with signals.deferred():
            while self.lent:
                index, ns, name = self.lent.pop()
                try:
                    links.move(ns, name, self.ns, self.taps[index])
                except Exception:
                    self.mark_dirty("a tap could not come back")

    def mark_dirty(self, why: str) -> None:
        with contextlib.suppress(OSError):
            (self.state / "dirty").write_text(why)

    def call(self, job: dict[str, Any], timeout: float) -> tuple[dict[str, Any], Path]:
        """Hand the guest's agent a job, wait (at most ``timeout`` s) for its result: the
        result and the folder holding its files. A guest that stops or misses the deadline
        is a GuestError naming the console's last lines (and the VM is not reused)."""
        name = uuid.uuid4().hex[:12]
        folder = self.exchange / name
        job = dict(job, folder=name)
        tmp = self.exchange / f"{name}.tmp"
        tmp.write_bytes(pickle.dumps(job))
        self.mark_dirty("a job was handed over")  # (cleared once its result is in)
        os.rename(tmp, self.exchange / f"{name}.job")
        result_path = self.exchange / f"{name}.result"
        who = f"the guest on {self.release}"
        vm.await_file(result_path, timeout, self.state, who, "finish its job", self.running)
        try:
            result = pickle.loads(result_path.read_bytes())
        except Exception as e:
            raise vm.GuestError(
                f"the guest on {self.release} wrote no readable result: {e}"
            ) from None
        result_path.unlink()
        self.cells += 1
        if not result.get("ok"):  # (the VM stays marked: it is not lent again)
            raise MbtestError(f"in the guest on {self.release}: {result.get('error')}")
        (self.state / "dirty").unlink(missing_ok=True)
        return result, folder

    def running(self) -> bool:
        """QEMU still runs (seen from its process here, or from its namespace when the VM
        is borrowed)."""
        if self.guest is not None:
            return self.guest.running()
        try:
            return bool(netns.pids(self.ns))
        except OSError:  # (the namespace is gone)
            return False

    def stop(self) -> None:
        """(its owner) End the guest: the namespace (and QEMU, virtiofsd in it), and with
        a record of its own, the folders and the record."""
        vm.end(self.ns, self.guest, self.owner)


def write_lease(folder: str, lease: dict[str, Any]) -> None:
    with open(os.path.join(folder, LEASE), "w") as f:
        json.dump(lease, f)


def read_lease(folder: str) -> dict[str, Any] | None:
    """The lease a matrix left in a cell's folder, or None (the cell boots its own VM)."""
    try:
        with open(os.path.join(folder, LEASE)) as f:
            lease = json.load(f)
    except (OSError, ValueError):
        return None
    return lease if isinstance(lease, dict) else None
