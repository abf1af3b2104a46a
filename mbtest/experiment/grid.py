"""The default grid: the baselines, then every cell the catalog's behaviours declare
(``Behaviour.CELLS``), each over every IP version the behaviour exists for; and its
selection by filters."""

from __future__ import annotations

from mbtest.experiment.scenario import Scenario
from mbtest.middlebox.base import Cell
from mbtest.middlebox.catalog import CATALOG
from mbtest.middlebox.spec import MiddleboxSpec

BASELINES = (
    Cell("baseline", "mptcp-unaffected"),
    Cell("baseline-dual-path", "mptcp-with-joins", topology="dual-path"),
)


def name_for(cell_name: str, ip_version: int) -> str:
    """A cell's name in the grid: IPv4 cells keep theirs, IPv6 ones get '-ipv6'."""
    return cell_name if ip_version == 4 else f"{cell_name}-ipv6"


def scenario(behaviour: str | None, cell: Cell, ip_version: int = 4) -> Scenario:
    """The scenario a cell declaration stands for, over one IP version."""
    boxes = {}
    if behaviour is not None:
        params = cell.params6 if ip_version == 6 and cell.params6 is not None else cell.params
        boxes = {cell.slot: MiddleboxSpec.parse(behaviour + (f":{params}" if params else ""))}
    return Scenario(
        name=name_for(cell.name, ip_version),
        topology=cell.topology,
        middleboxes=boxes,
        expect=cell.expect,
        checksums=cell.checksums,
        ip_version=ip_version,
        **cell.conditions,
    )


def default_grid(ip_versions: tuple[int, ...] = (4, 6)) -> list[Scenario]:
    """Every catalog behaviour on the initial path, join-path variants where they matter,
    checksums on and off where they matter, both directions for payload changes; each over
    every IP version the behaviour exists for (IPv4 first, then IPv6)."""
    cells = []
    for version in ip_versions:
        cells += [scenario(None, cell, version) for cell in BASELINES]
        for name, cls in CATALOG.items():
            for cell in cls.CELLS:
                if version in (cell.ip_versions or cls.IP_VERSIONS):
                    cells.append(scenario(name, cell, version))
    return cells


def select(
    grid: list[Scenario],
    topologies: tuple[str, ...] = (),
    behaviours: tuple[str, ...] = (),
    checksum: str = "both",
    names: tuple[str, ...] = (),
) -> list[Scenario]:
    """The cells matching the filters (behaviour by name, or 'none' for baselines; a cell's
    IPv4 name stands for both its versions, its '-ipv6' name for that one only)."""
    out = []
    for cell in grid:
        if topologies and cell.topology not in topologies:
            continue
        if behaviours and not cell.behaviours & set(behaviours):
            continue
        if checksum != "both" and cell.checksums != (checksum == "on"):
            continue
        if names and cell.name not in names and cell.name.removesuffix("-ipv6") not in names:
            continue
        out.append(cell)
    return out
