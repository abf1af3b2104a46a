"""Remove what dead owners left: their namespaces (with the processes inside), veth ends still
in the root namespace, state folders, records, and firewall rules whose owner died.

What a live process owns is left alone, and so is a testbed brought up with ``topo up``
(the user's until ``topo down``) unless ``force`` says otherwise; ``dry_run`` only says.
"""

from __future__ import annotations

import contextlib
import os
import shutil
from dataclasses import dataclass, field

from mbtest.host import links, netfilter, netns, owners


@dataclass
class CleanupReport:
    removed: list[str] = field(default_factory=list)  # (or would be, on a dry run)
    kept: list[str] = field(default_factory=list)  # what live owners or the user still own


def _describe(owner: owners.Owner) -> str:
    what = owner.about.get("topology") or owner.kind
    return f"{owner.kind} {owner.run_id} ({what}, owner pid {owner.pid})"


def cleanup(dry_run: bool = False, force: bool = False) -> CleanupReport:
    """Remove (or, on a dry run, list) everything whose owner is gone; say what and why."""
    netns.require_root()
    report = CleanupReport()
    # Namespaces and links are listed before the records are read: a run that starts
    # meanwhile records its names before creating them, so it is never mistaken for an orphan.
    spaces = set(netns.listed())
    root_links = links.root_links(netns.PREFIX.rstrip("-"))
    claimed: set[str] = set()
    live_ids: set[str] = set()
    for owner in owners.records():
        mine = {ns for ns in owner.namespaces.values()}
        if owner.alive and not force:
            claimed |= mine
            live_ids.add(owner.run_id)
            why = "brought up by topo up" if owner.persistent else "its owner runs"
            report.kept.append(f"{_describe(owner)}: {why}")
            continue
        claimed |= mine
        reason = "" if not owner.alive else " (forced)"
        for ns in sorted(mine & spaces):
            report.removed.append(f"namespace {ns}{reason}")
            if not dry_run:
                killed = netns.remove(ns)
                if killed:
                    report.removed[-1] += f" (killed {len(killed)} processes)"
        for folder in owner.folders:
            if folder.startswith(owners.STATE_DIR + "/"):
                report.removed.append(f"folder {folder}")
                if not dry_run:
                    shutil.rmtree(folder, ignore_errors=True)
        report.removed.append(f"record of {_describe(owner)}{reason}")
        if not dry_run:
            owner.forget()
    for ns in sorted(spaces - claimed):  # no record names it: its run's record is gone
        report.removed.append(f"namespace {ns} (no owner recorded)")
        if not dry_run:
            netns.remove(ns)
    for link in root_links:
        if any(link.startswith(netns.PREFIX.rstrip("-") + run_id) for run_id in live_ids):
            continue
        report.removed.append(f"link {link}")
        if not dry_run:
            with contextlib.suppress(Exception):
                links.delete_root_link(link)
    remove_orphaned_rules(report, dry_run, force)
    return report


def remove_orphaned_rules(
    report: CleanupReport | None = None, dry_run: bool = False, force: bool = False
) -> list[str]:
    """The firewall rules (of the namespace this thread is in) whose owner died: removed,
    and said in the report; returns what was removed."""
    report = report if report is not None else CleanupReport()
    removed = []
    for rule in netfilter.owned_rules():
        if rule.alive and not force:
            report.kept.append(f"{rule.tool} rule {rule.comment}: its owner runs")
            continue
        removed.append(f"{rule.tool} rule {rule.comment}")
        if not dry_run:
            with contextlib.suppress(Exception):
                netfilter.delete_rule(rule.tool, rule.rule)
    report.removed += removed
    return removed


def remove_owned_by(pids: set[int]) -> list[str]:
    """Remove what the given processes (now dead: children that were killed) recorded and
    left: their namespaces, folders and records; returns what was removed."""
    removed = []
    for owner in owners.records():
        if owner.pid not in pids or owner.persistent or owner.alive:
            continue
        for ns in owner.namespaces.values():
            if netns.exists(ns):
                netns.remove(ns)
                removed.append(f"namespace {ns}")
        prefix = netns.PREFIX.rstrip("-") + owner.run_id
        with contextlib.suppress(Exception):
            for link in links.root_links(prefix):
                links.delete_root_link(link)
        for folder in owner.folders:
            if folder.startswith(owners.STATE_DIR + "/"):
                shutil.rmtree(folder, ignore_errors=True)
        owner.forget()
        removed.append(f"record of {_describe(owner)}")
    return removed


def left_by(pids: set[int]) -> list[str]:
    """What records of these processes still name (their namespaces that exist), and the
    firewall rules they own: what a run would leave behind if it stopped now."""
    left = []
    for owner in owners.records():
        if owner.pid in pids:
            left += [ns for ns in owner.namespaces.values() if netns.exists(ns)]
            left += [f for f in owner.folders if os.path.isdir(f)]
    for rule in netfilter.owned_rules():
        if any(f"-{pid}-" in rule.comment for pid in pids):
            left.append(f"{rule.tool} rule {rule.comment}")
    return left
