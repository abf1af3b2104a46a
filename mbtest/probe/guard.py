"""Keep the local stack from resetting what a probe started.

The target answers a crafted SYN with a SYN/ACK that no local socket expects, and the local
kernel would answer that with a RST, tearing down the probe's connection at the target. While
a probe runs, one firewall rule per probe 4-tuple drops those RSTs, and only those: the
probe's own RSTs carry a packet mark the rule lets through. Each rule's comment names its
owner process (pid and start time), so ``mbtest cleanup`` removes those of a killed probe.
"""

from __future__ import annotations

import threading

from mbtest.host.netfilter import TOOLS, RuleOwner, owner_comment

MARK = 0x6D62  # "mb": set on the probe's own packets (SO_MARK), never dropped


class RstGuard:
    """Owns the RST-dropping rules of one probe run; ``close`` removes every one."""

    def __init__(self, run_id: str, version: int):
        self.tool = TOOLS[0] if version == 4 else TOOLS[1]
        self.comment = owner_comment("probe", run_id)
        self.rules = RuleOwner()
        self._lock = threading.Lock()  # probes side by side add rules from their threads

    def protect(self, src: str, sport: int, dst: str, dport: int) -> None:
        with self._lock:
            self._add(src, sport, dst, dport)

    def _add(self, src: str, sport: int, dst: str, dport: int) -> None:
        self.rules.add(
            self.tool,
            [
                "-I",
                "OUTPUT",
                "-p",
                "tcp",
                "-s",
                src,
                "-d",
                dst,
                "--sport",
                str(sport),
                "--dport",
                str(dport),
                "--tcp-flags",
                "RST",
                "RST",
                "-m",
                "mark",
                "!",
                "--mark",
                str(MARK),
                "-m",
                "comment",
                "--comment",
                self.comment,
                "-j",
                "DROP",
            ],
        )

    def close(self) -> None:
        self.rules.remove_all()

    def __enter__(self) -> RstGuard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
