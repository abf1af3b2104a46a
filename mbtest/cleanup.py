"""Remove what a killed run left behind: mbt-* namespaces with their processes, veth ends
still in the root namespace, testbed state files, and probe firewall rules whose probe died."""

from __future__ import annotations

import contextlib
import os

from mbtest.probe import guard
from mbtest.testbed import builder, links, netns


def cleanup(prefix: str = netns.PREFIX) -> list[str]:
    """Remove everything whose name starts with prefix; say what was removed."""
    netns.require_root()
    removed = []
    for name in netns.listed(prefix):
        pids = netns.remove(name)
        removed.append(f"namespace {name}" + (f" (killed {len(pids)} processes)" if pids else ""))
    for link in links.root_links(prefix.rstrip("-")):
        links.delete_root_link(link)
        removed.append(f"link {link}")
    removed += guard.remove_orphans()
    for state in builder.running():
        path = os.path.join(builder.STATE_DIR, f"{state['run_id']}.json")
        if not any(netns.exists(n) for n in state.get("namespaces", {}).values()):
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)
                removed.append(f"state of testbed {state['run_id']} ({state.get('topology')})")
    return removed
