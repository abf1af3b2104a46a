"""Keep the local stack from resetting what a probe started.

The target answers a crafted SYN with a SYN/ACK that no local socket expects, and the local
kernel would answer that with a RST, tearing down the probe's connection at the target. While
a probe runs, one firewall rule per probe 4-tuple drops those RSTs, and only those: the
probe's own RSTs carry a packet mark the rule lets through. Each rule's comment names its
owner process (pid and start time), so ``mbtest cleanup`` removes those of a killed probe.
"""

from __future__ import annotations

import socket
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
        self.holders: list[socket.socket] = []  # the reserved ports, bound until close
        self.spare: list[tuple[str, str, int, int]] = []  # (src, dst, dport, port) not taken

    def protect(self, src: str, sport: int, dst: str, dport: int) -> None:
        with self._lock:
            self.rules.add(self.tool, self._rule(src, sport, dst, dport))

    def reserve(self, src: str, dst: str, dport: int, count: int) -> None:
        """Bind COUNT local ports toward dst:dport and protect them all with one firewall
        call: the probes of a run then ``take`` a protected port without a call each."""
        family = socket.AF_INET6 if ":" in src else socket.AF_INET
        holders: list[socket.socket] = []
        try:
            for _ in range(count):
                holders.append(socket.socket(family, socket.SOCK_STREAM))
                holders[-1].bind((src, 0))
            ports = [h.getsockname()[1] for h in holders]
            with self._lock:
                self.rules.add_many(self.tool, [self._rule(src, p, dst, dport) for p in ports])
        except BaseException:
            for holder in holders:
                holder.close()
            raise
        with self._lock:
            self.holders += holders
            self.spare += [(src, dst, dport, p) for p in ports]

    def take(self, src: str, dst: str, dport: int) -> int | None:
        """A reserved port for this source and destination, or None when none is left."""
        with self._lock:
            for i, (s, d, p, port) in enumerate(self.spare):
                if (s, d, p) == (src, dst, dport):
                    del self.spare[i]
                    return port
        return None

    def _rule(self, src: str, sport: int, dst: str, dport: int) -> list[str]:
        return [
            "-I", "OUTPUT", "-p", "tcp", "-s", src, "-d", dst,
            "--sport", str(sport), "--dport", str(dport), "--tcp-flags", "RST", "RST",
            "-m", "mark", "!", "--mark", str(MARK),
            "-m", "comment", "--comment", self.comment, "-j", "DROP",
        ]  # fmt: skip

    def close(self) -> None:
        self.rules.remove_all()
        for holder in self.holders:
            holder.close()
        self.holders.clear()
        self.spare.clear()

    def __enter__(self) -> RstGuard:
        return self

    def __exit__(self, *exc) -> None:
        self.close()
