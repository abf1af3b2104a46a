"""iptables / ip6tables rules with an owner: each rule added is removed again, exactly."""

from __future__ import annotations

import shlex
import subprocess

from mbtest.errors import MbtestError

TOOLS = ("iptables", "ip6tables")


class RuleOwner:
    """Installs iptables rules and nftables tables, and removes exactly those again."""

    def __init__(self) -> None:
        self.installed: list[tuple[str, list[str]]] = []

    def add(self, tool: str, args: list[str]) -> None:
        _run(tool, args)
        self.installed.append((tool, args))

    def remove_all(self) -> None:
        for tool, args in reversed(self.installed):
            undo = (
                args if tool == "nft" else ["-w", *["-D" if a in ("-A", "-I") else a for a in args]]
            )
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
