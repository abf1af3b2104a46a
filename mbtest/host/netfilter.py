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

    def add_many(self, tool: str, rules: list[list[str]]) -> None:
        """Several rules in one ``iptables-restore`` call (all of them or none): a probe
        run protects all its ports at once rather than with a process per rule."""
        if not rules:
            return
        with signals.deferred():
            try:
                _restore(tool, rules)
            except _CannotBatch:
                for args in rules:
                    self.add(tool, args)
                return
            self.installed.extend((tool, args) for args in rules)

    def remove_all(self) -> None:
        """Every rule added, in one call per tool (one by one if that fails, so that a rule
        someone else removed does not keep the others)."""
        with signals.deferred():
            undo: dict[str, list[list[str]]] = {}
            for tool, args in reversed(self.installed):
                undo.setdefault(tool, []).append(["-D" if a in ("-A", "-I") else a for a in args])
            for tool, rules in undo.items():
                try:
                    _restore(tool, rules)
                except (MbtestError, _CannotBatch):
                    for args in rules:
                        subprocess.run([tool, "-w", *args], capture_output=True, timeout=10)
            self.installed.clear()


class _CannotBatch(Exception):
    """A rule iptables-restore cannot be given as text (a quote in an argument)."""


def _restore(tool: str, rules: list[list[str]]) -> None:
    """Rules (each as iptables arguments, ``-t TABLE`` optional) in one iptables-restore."""
    tables: dict[str, list[str]] = {}
    for args in rules:
        args = list(args)
        table = "filter"
        if "-t" in args:
            at = args.index("-t")
            table = args[at + 1]
            del args[at : at + 2]
        if any('"' in a or "\n" in a for a in args):
            raise _CannotBatch
        words = [f'"{a}"' if (not a or any(c.isspace() for c in a)) else a for a in args]
        tables.setdefault(table, []).append(" ".join(words))
    text = "".join(f"*{t}\n" + "\n".join(lines) + "\nCOMMIT\n" for t, lines in tables.items())
    try:
        done = subprocess.run(
            [f"{tool}-restore", "-w", "--noflush"],
            input=text,
            capture_output=True,
            text=True,
            timeout=10,
        )
    except FileNotFoundError:
        raise _CannotBatch from None
    if done.returncode != 0:
        lines = done.stderr.strip().splitlines()
        raise MbtestError(f"{tool}-restore failed: {lines[-1] if lines else done.returncode}")


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
