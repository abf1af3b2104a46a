"""Keep the local stack from resetting what a probe started.

The target answers a crafted SYN with a SYN/ACK that no local socket expects, and the local
kernel would answer that with a RST, tearing down the probe's connection at the target. While
a probe runs, one firewall rule per probe 4-tuple drops those RSTs, and only those: the
probe's own RSTs carry a packet mark the rule lets through. Each rule's comment names the run
and the owning process, so ``mbtest cleanup`` can remove rules whose owner was SIGKILLed.
"""

from __future__ import annotations

import os
import re

from mbtest.netfilter import TOOLS, RuleOwner, delete_rule, listed_rules
from mbtest.testbed import netns

MARK = 0x6D62  # "mb": set on the probe's own packets (SO_MARK), never dropped
COMMENT_PREFIX = "mbtest-probe-"
_OWNER = re.compile(rf"^{COMMENT_PREFIX}[0-9a-f]+-(\d+)$")


class RstGuard:
    """Owns the RST-dropping rules of one probe run; ``close`` removes every one."""

    def __init__(self, run_id: str, version: int):
        self.tool = TOOLS[0] if version == 4 else TOOLS[1]
        self.comment = f"{COMMENT_PREFIX}{run_id}-{os.getpid()}"
        self.rules = RuleOwner()

    def protect(self, src: str, sport: int, dst: str, dport: int) -> None:
        self.rules.add(self.tool, [
            "-I", "OUTPUT", "-p", "tcp", "-s", src, "-d", dst, "--sport", str(sport),
            "--dport", str(dport), "--tcp-flags", "RST", "RST", "-m", "mark", "!", "--mark",
            str(MARK), "-m", "comment", "--comment", self.comment, "-j", "DROP",
        ])  # fmt: skip

    def close(self) -> None:
        self.rules.remove_all()

    def __enter__(self) -> RstGuard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def remove_orphans() -> list[str]:
    """Remove the RST-dropping rules whose probe process no longer runs; say what went."""
    removed = []
    for tool in TOOLS:
        for rule in listed_rules(tool, "OUTPUT"):
            comment = rule[rule.index("--comment") + 1] if "--comment" in rule else ""
            owner = _OWNER.match(comment)
            if owner and not netns.alive(int(owner.group(1))):
                delete_rule(tool, rule)
                removed.append(f"{tool} rule {comment}")
    return removed
