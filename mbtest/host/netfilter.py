"""iptables / ip6tables rules with an owner: each rule added is removed again, exactly.

Rules added to a namespace mbtest does not own (the host's, for a probe) carry a comment
naming their owner process by pid and start time, so that ``mbtest cleanup`` can tell the
rules of a live run from those a killed run left.
"""

from __future__ import annotations

import os
import re
import shlex
import subprocess
from dataclasses import dataclass

from mbtest.errors import MbtestError
from mbtest.host import signals
from mbtest.host.owners import process_alive, start_time

TOOLS = ("iptables", "ip6tables")
_OWNER_COMMENT = re.compile(r"^mbtest-([a-z]+)-([0-9a-f]{6})-(\d+)(?:-(\d+))?$")


class RuleOwner:
    """Installs iptables rules and removes exactly those again."""

    def __init__(self) -> None:
        self.installed: list[tuple[str, list[str]]] = []

    def add(self, tool: str, args: list[str]) -> None:
        with signals.deferred():  # added and recorded, or neither
            _run(tool, args)
            self.installed.append((tool, args))

    def remove_all(self) -> None:
        with signals.deferred():
            for tool, args in reversed(self.installed):
                undo = ["-w", *["-D" if a in ("-A", "-I") else a for a in args]]
                subprocess.run([tool, *undo], capture_output=True, timeout=10)
            self.installed.clear()


def _run(tool: str, args: list[str]) -> None:
    try:
        done = subprocess.run([tool, "-w", *args], capture_output=True, text=True, timeout=10)
    except FileNotFoundError:
        raise MbtestError(f"{tool} is not installed: run `make setup`") from None
    if done.returncode != 0:
        raise MbtestError(f"{tool} {' '.join(args)} failed: {done.stderr.strip().splitlines()[-1]}")


def listed_rules(tool: str, chain: str, table: str = "filter") -> list[list[str]]:
    """The rules of a chain as argument lists (``-A CHAIN ...``), as ``iptables -S`` prints them."""
    try:
        done = subprocess.run(
            [tool, "-w", "-t", table, "-S", chain], capture_output=True, text=True, timeout=10
        )
    except FileNotFoundError:
        return []
    return [shlex.split(line) for line in done.stdout.splitlines() if line.startswith("-A ")]


def delete_rule(tool: str, rule: list[str], table: str = "filter") -> None:
    """Delete a rule given as ``iptables -S`` listed it."""
    _run(tool, ["-t", table, "-D", *rule[1:]])


def owner_comment(kind: str, run_id: str) -> str:
    """``mbtest-KIND-RUNID-PID-START``: the comment of a rule this process owns."""
    pid = os.getpid()
    return f"mbtest-{kind}-{run_id}-{pid}-{start_time(pid) or 0}"


@dataclass(frozen=True)
class OwnedRule:
    tool: str
    chain: str
    rule: list[str]  # as iptables -S lists it
    comment: str

    @property
    def alive(self) -> bool:
        match = _OWNER_COMMENT.match(self.comment)
        if match is None:
            return True  # not ours to judge
        started = int(match.group(4)) if match.group(4) else None
        return process_alive(int(match.group(3)), started)


def owned_rules(chains: tuple[str, ...] = ("OUTPUT", "INPUT")) -> list[OwnedRule]:
    """Every rule of the root namespace's filter table that carries an mbtest owner comment."""
    found = []
    for tool in TOOLS:
        for chain in chains:
            for rule in listed_rules(tool, chain):
                comment = rule[rule.index("--comment") + 1] if "--comment" in rule else ""
                if _OWNER_COMMENT.match(comment):
                    found.append(OwnedRule(tool, chain, rule, comment))
    return found
