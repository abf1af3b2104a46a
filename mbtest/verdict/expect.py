"""What RFC 8684 expects (MPTCP-REFERENCE §4), as data: predicates over observed facts.

Each expectation names the facts it needs and what they must be. The verdict compares:
``as-expected``; ``deviates`` (naming the facts that differ); ``inconclusive`` when the
middlebox never touched a packet or a needed fact is missing; ``error`` when the harness
itself failed (a middlebox crashed).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mbtest.verdict import facts as F
from mbtest.verdict.facts import Fact

# A check is (fact, operator, operand): a fact named in mbtest.verdict.facts, an operator
# of OPERATORS below.
Check = tuple[str, str, Any]

INTACT = [(F.DATA_C2S, "eq", "intact"), (F.DATA_S2C, "eq", "intact"), (F.STALLED, "eq", False)]
CARRIES_ON = [(F.CONNECTED, "eq", True), *INTACT]


@dataclass(frozen=True)
class Expectation:
    name: str
    rfc: str
    text: str
    checks: tuple[Check, ...]


def _e(name: str, rfc: str, text: str, *checks: Check) -> Expectation:
    return Expectation(name, rfc, text, tuple(checks))


EXPECTATIONS = {
    e.name: e
    for e in (
        _e("mptcp-unaffected", "§3, §6", "MPTCP on all subflows; data intact",
           *CARRIES_ON, (F.MPTCP_NEGOTIATED, "eq", True), (F.FALLBACK_AT_HANDSHAKE, "eq", False),
           (F.FALLBACK_LATER, "eq", False)),
        _e("mptcp-with-joins", "§3.2, §6", "MPTCP; joins authenticate by token and complete; data intact",
           *CARRIES_ON, (F.MPTCP_NEGOTIATED, "eq", True), (F.FALLBACK_LATER, "eq", False),
           (F.JOINS_COMPLETED, "ge", 1)),
        _e("fallback-at-handshake", "§3.1, §3.7, §6", "plain TCP from the handshake on; data intact",
           *CARRIES_ON, (F.FALLBACK_AT_HANDSHAKE, "eq", True), (F.INITIAL_SUBFLOW_RESET, "eq", False)),
        _e("fallback-infinite-mapping", "§3.7", "fallback by infinite mapping, without RST; data intact",
           *CARRIES_ON, (F.MPTCP_NEGOTIATED, "eq", True), (F.FALLBACK_LATER, "eq", True),
           (F.INITIAL_SUBFLOW_RESET, "eq", False)),
        _e("join-reset-middlebox", "§3.7",
           "the join subflow is closed with RST and MP_TCPRST reason 6; the connection continues",
           *CARRIES_ON, (F.JOIN_RESET_REASONS, "has", "MIDDLEBOX_INTERFERENCE")),
        _e("join-not-established", "§3.2, §6", "the join subflow is not established; the connection continues",
           *CARRIES_ON, (F.MPTCP_NEGOTIATED, "eq", True), (F.JOINS_COMPLETED, "eq", 0)),
        _e("join-synack-stripped", "§3.2", "the initiator closes the join subflow with RST",
           *CARRIES_ON, (F.JOINS_COMPLETED, "eq", 0), (F.JOIN_RESET_REASONS, "nonempty", True)),
        _e("lb-unknown-token", "§3.2",
           "the other backend does not know the token: RST with MP_TCPRST 1 or 3; the connection continues",
           *CARRIES_ON, (F.JOIN_RESET_REASONS, "any-of", ["MPTCP_SPECIFIC", "ADMINISTRATIVELY_PROHIBITED"])),
        _e("payload-csum-single", "§3.7",
           "MP_FAIL; infinite mapping; fallback without RST; the changed bytes reach the application",
           (F.CONNECTED, "eq", True), (F.MP_FAIL_SENT, "ge", 1), (F.FALLBACK_LATER, "eq", True),
           (F.INITIAL_SUBFLOW_RESET, "eq", False), (F.STALLED, "eq", False)),
        _e("payload-csum-multi", "§3.7",
           "MP_FAIL and RST on the affected subflow; data retransmitted on the others, intact",
           *CARRIES_ON, (F.MP_FAIL_SENT, "ge", 1), (F.CHECKSUM_ERRORS, "ge", 1)),
        _e("payload-undetected", "§3.7", "not detectable without checksums: the application receives changed data",
           (F.CONNECTED, "eq", True), (F.STALLED, "eq", False), (F.CHECKSUM_ERRORS, "eq", 0),
           (F.CHANGED_SOMEWHERE, "eq", True)),
        _e("length-change-csum", "§3.3.1, §3.7", "MP_FAIL and fallback; the connection carries on",
           (F.CONNECTED, "eq", True), (F.STALLED, "eq", False), (F.MP_FAIL_SENT, "ge", 1),
           (F.FALLBACK_LATER, "eq", True)),
        _e("length-change-nocsum", "§3.3.1, §3.7",
           "the mapping no longer matches: the subflow is treated as broken or falls back; no stall",
           (F.CONNECTED, "eq", True), (F.STALLED, "eq", False), (F.BROKEN_OR_FALLBACK, "eq", True)),
        _e("plain-tcp", "§6", "plain TCP (the middlebox does not speak MPTCP); data intact",
           *CARRIES_ON, (F.FALLBACK_AT_HANDSHAKE, "eq", True)),
        _e("add-addr-removed", "§3.4.1", "no subflow to the advertised address; the connection continues",
           *CARRIES_ON, (F.ADD_ADDR_RECEIVED, "eq", 0), (F.JOINS_COMPLETED, "eq", 0)),
        _e("add-addr-ignored", "§3.4.1",
           "the rewritten ADD_ADDR fails its HMAC and is ignored: no subflow to it; the connection continues",
           *CARRIES_ON, (F.JOINS_COMPLETED, "eq", 0)),
        _e("add-addr-retransmitted", "§3.4.1", "without its echo the sender retransmits ADD_ADDR; the connection continues",
           *CARRIES_ON, (F.ADD_ADDR_SENT, "ge", 2)),
        _e("flags-consistent", "§3.1", "each end follows the A flag it saw; data must not be corrupted",
           *CARRIES_ON),
    )
}  # fmt: skip


OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda value, operand: value == operand,
    "ge": lambda value, operand: value >= operand,
    "le": lambda value, operand: value <= operand,
    "has": lambda value, operand: operand in value,  # a list contains it
    "nonempty": lambda value, operand: bool([v for v in value if v != "none"]) == operand,
    "any-of": lambda value, operand: bool(set(value) & set(operand)),  # lists intersect
}


def verdict(
    expectation: Expectation, facts: dict[str, Fact], has_middlebox: bool
) -> dict[str, Any]:
    """as-expected, deviates, inconclusive or error, with the facts that decided it."""
    crashed = facts.get(F.MIDDLEBOX_CRASHED)
    if crashed is not None:
        return {"verdict": "error", "why": [crashed.evidence]}
    if has_middlebox and not facts.get(F.MIDDLEBOX_TRIGGERED, Fact("", False, "")).value:
        return {"verdict": "inconclusive", "why": ["the middlebox never changed a packet"]}
    missing = [name for name, _, _ in expectation.checks if name not in facts]
    if missing:
        return {"verdict": "inconclusive", "why": [f"no evidence for {name}" for name in missing]}
    differ = []
    for name, op, operand in expectation.checks:
        fact = facts[name]
        if not OPERATORS[op](fact.value, operand):
            differ.append(f"{name} is {fact.value!r}, expected {op} {operand!r} ({fact.evidence})")
    return {"verdict": "deviates" if differ else "as-expected", "why": differ}
