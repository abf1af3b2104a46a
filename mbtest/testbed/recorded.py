"""Testbeds recorded on this machine (``topo up`` or a live run): list them, find a node's
namespace, tear one down. Only run ids are accepted: nothing outside mbtest's own state is
ever read, killed or deleted."""

from __future__ import annotations

import shutil
from dataclasses import dataclass

from mbtest.errors import MbtestError
from mbtest.host import netns, owners


@dataclass(frozen=True)
class RecordedTestbed:
    owner: owners.Owner

    @property
    def run_id(self) -> str:
        return self.owner.run_id

    @property
    def namespaces(self) -> dict[str, str]:
        return dict(self.owner.namespaces)

    @property
    def topology(self) -> str:
        return str(self.owner.about.get("topology", "?"))

    @property
    def middleboxes(self) -> dict[str, str]:
        return dict(self.owner.about.get("middleboxes", {}))


def up() -> list[RecordedTestbed]:
    """Every testbed recorded, oldest first."""
    return [RecordedTestbed(o) for o in owners.records("testbed")]


def find(run_id: str | None) -> RecordedTestbed:
    """The testbed with this run id, or the only one up; one sentence otherwise."""
    beds = up()
    if run_id is not None:
        owners.check_run_id(run_id)
        beds = [b for b in beds if b.run_id == run_id]
        if not beds:
            raise MbtestError(f"no testbed with run id {run_id} (see mbtest topo ls)")
        return beds[0]
    if not beds:
        raise MbtestError("no testbed is up (start one with mbtest topo up)")
    if len(beds) > 1:
        ids = ", ".join(b.run_id for b in beds)
        raise MbtestError(f"several testbeds are up ({ids}): choose one with --testbed")
    return beds[0]


def node_namespace(node: str, run_id: str | None) -> str:
    bed = find(run_id)
    if node not in bed.namespaces:
        raise MbtestError(
            f"testbed {bed.run_id} has no node {node!r} (nodes: {', '.join(bed.namespaces)})"
        )
    return bed.namespaces[node]


def tear_down(run_id: str) -> list[str]:
    """Remove a recorded testbed (topo down): its namespaces, with what runs in them, its
    state folder and its record; returns the namespaces removed."""
    bed = find(run_id)
    removed = []
    for name in bed.namespaces.values():
        if netns.exists(name):
            netns.remove(name)
            removed.append(name)
    for folder in bed.owner.folders:
        if folder.startswith(owners.STATE_DIR + "/"):
            shutil.rmtree(folder, ignore_errors=True)
    bed.owner.forget()
    return removed
