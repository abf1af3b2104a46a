"""Warm VMs for a matrix's cells on other kernels: booting a guest and importing the
project's code in it takes about half a minute under emulation, a cell a few seconds, so
the matrix boots one VM per kernel and running cell, and lends it to cell after cell (the
cell's process borrows it through a lease in its folder). A VM that comes back unclean
(a cell killed mid-way, a tap lost, a job left) is stopped and the next cell gets a fresh
one. Every VM is owned by the matrix's process: stopped when the matrix ends, however."""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass, field

from mbtest.testbed import endpointvm, topology
from mbtest.testbed.builder import Testbed, endpoint_kernel
from mbtest.testbed.endpointvm import EndpointVM


def nics_needed(topology_name: str, params: dict) -> int:
    """How many NICs the VM of a cell on this topology needs (its endpoints' links)."""
    return len(Testbed(topology.load(topology_name, params), kernel="any").vm_links())


@dataclass
class Pool:
    nics: dict[str, int] = field(default_factory=dict)  # kernel -> NICs its VMs get
    idle: dict[str, list[EndpointVM]] = field(default_factory=dict)
    busy: dict[str, tuple[str, EndpointVM]] = field(default_factory=dict)  # folder -> VM
    booted: int = 0
    jobs: int = 1  # cells at once: the most VMs a kernel needs
    cells: dict[str, int] = field(default_factory=dict)  # kernel -> its cells not yet lent

    known: dict[str, str | None] = field(default_factory=dict)  # cell name -> its kernel

    def kernel_of(self, cell) -> str | None:
        """The kernel of the cell's endpoints (None: the host's; asked once per cell)."""
        if cell.name not in self.known:
            topo = topology.load(cell.topology, cell.params)
            self.known[cell.name] = endpoint_kernel(topo, cell.kernel)
        return self.known[cell.name]

    def plan(self, cells) -> None:
        """Size each kernel's VMs for the largest testbed among its cells; count them."""
        for cell in cells:
            kernel = self.kernel_of(cell)
            if kernel is not None:
                self.cells[kernel] = self.cells.get(kernel, 0) + 1
                need = nics_needed(cell.topology, cell.params)
                self.nics[kernel] = max(self.nics.get(kernel, 1), need)

    def lend(self, cell, folder: str) -> None:
        """Lend a warm VM to the cell about to run in ``folder`` (booted if none is idle);
        nothing for a cell whose endpoints are the host's."""
        kernel = self.kernel_of(cell)
        if kernel is None:
            return
        idle = self.idle.setdefault(kernel, [])
        if not idle:  # boot what this kernel's cells can use at once, side by side
            in_use = sum(1 for k, _ in self.busy.values() if k == kernel)
            wanted = max(1, min(self.jobs - in_use, self.cells.get(kernel, 1)))
            nics = self.nics.get(kernel) or nics_needed(cell.topology, cell.params)
            starting = []
            try:
                for _ in range(wanted):
                    starting.append(EndpointVM.start(kernel, nics))
                for guest in starting:
                    guest.wait_ready()
            except BaseException:
                for guest in starting:
                    guest.stop()
                raise
            self.booted += len(starting)
            idle.extend(starting)
        self.cells[kernel] = self.cells.get(kernel, 1) - 1
        guest = idle.pop()
        self.busy[folder] = (kernel, guest)
        endpointvm.write_lease(folder, guest.lease())

    def back(self, folder: str) -> None:
        """The cell in ``folder`` ended: its VM is idle again if clean, else stopped."""
        kernel, guest = self.busy.pop(folder, (None, None))
        if guest is None:
            return
        with contextlib.suppress(FileNotFoundError):
            os.unlink(os.path.join(folder, endpointvm.LEASE))
        guest.cells += 1
        if guest.clean():
            self.idle.setdefault(kernel, []).append(guest)
        else:
            guest.stop()

    def retire(self, cells_left) -> None:
        """Stop idle VMs of kernels no cell left needs (their memory is freed)."""
        if not any(self.idle.values()):
            return
        needed = {self.kernel_of(cell) for cell in cells_left}
        for kernel, guests in self.idle.items():
            if kernel not in needed:
                while guests:
                    guests.pop().stop()

    def stop(self) -> None:
        for guests in self.idle.values():
            while guests:
                guests.pop().stop()
        for _, guest in self.busy.values():
            guest.stop()
        self.busy.clear()
