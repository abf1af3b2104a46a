"""Remove what a killed run left behind: namespaces named mbt-* and their processes."""

from __future__ import annotations

from mbtest.testbed import netns


def cleanup(prefix: str = netns.PREFIX) -> list[str]:
    """Remove every namespace whose name starts with prefix; say what was removed."""
    netns.require_root()
    removed = []
    for name in netns.listed(prefix):
        pids = netns.remove(name)
        removed.append(f"namespace {name}" + (f" (killed {len(pids)} processes)" if pids else ""))
    return removed
