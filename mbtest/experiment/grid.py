"""The default grid: the baselines, then every cell the catalog's behaviours declare
(``Behaviour.CELLS``), and its selection by filters."""

from __future__ import annotations

from mbtest.experiment.scenario import Scenario
from mbtest.middlebox.base import Cell
from mbtest.middlebox.catalog import CATALOG
from mbtest.middlebox.spec import MiddleboxSpec

BASELINES = (
    Scenario(name="baseline", topology="single-path", expect="mptcp-unaffected"),
    Scenario(name="baseline-dual-path", topology="dual-path", expect="mptcp-with-joins"),
)


def scenario(behaviour: str, cell: Cell) -> Scenario:
    """The scenario a behaviour's cell declaration stands for."""
    text = behaviour + (f":{cell.params}" if cell.params else "")
    return Scenario(
        name=cell.name,
        topology=cell.topology,
        middleboxes={cell.slot: MiddleboxSpec.parse(text)},
        expect=cell.expect,
        checksums=cell.checksums,
        **cell.traffic,
    )


def default_grid() -> list[Scenario]:
    """Every catalog behaviour on the initial path, join-path variants where they matter,
    checksums on and off where they matter, both directions for payload changes."""
    cells = list(BASELINES)
    for name, cls in CATALOG.items():
        cells += [scenario(name, cell) for cell in cls.CELLS]
    return cells


def select(
    grid: list[Scenario],
    topologies: tuple[str, ...] = (),
    behaviours: tuple[str, ...] = (),
    checksum: str = "both",
) -> list[Scenario]:
    """The cells matching the filters (behaviour by name, or 'none' for baselines)."""
    out = []
    for cell in grid:
        if topologies and cell.topology not in topologies:
            continue
        if behaviours and not cell.behaviours & set(behaviours):
            continue
        if checksum != "both" and cell.checksums != (checksum == "on"):
            continue
        out.append(cell)
    return out
