"""What RFC 8684 expects (MPTCP-REFERENCE §4), as data: predicates over observed facts.

Each expectation names the facts it needs and what they must be. The verdict compares:
``as-expected``; ``deviates`` (naming the facts that differ); ``inconclusive`` when the
middlebox never touched a packet or a needed fact is missing; ``error`` when the harness
itself failed (a middlebox crashed).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mbtest.scenario.facts import Fact

# A check is (fact, operator, operand); operators: eq, ge, le, in, has (list contains),
# any-of (list intersects), subset (list within).
Check = tuple[str, str, Any]

INTACT = [("data_c2s", "eq", "intact"), ("data_s2c", "eq", "intact"), ("stalled", "eq", False)]
CARRIES_ON = [("connected", "eq", True), *INTACT]


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
           *CARRIES_ON, ("mptcp_negotiated", "eq", True), ("fallback_at_handshake", "eq", False),
           ("fallback_later", "eq", False)),
        _e("mptcp-with-joins", "§3.2, §6", "MPTCP; joins authenticate by token and complete; data intact",
           *CARRIES_ON, ("mptcp_negotiated", "eq", True), ("fallback_later", "eq", False),
           ("joins_completed", "ge", 1)),
        _e("fallback-at-handshake", "§3.1, §3.7, §6", "plain TCP from the handshake on; data intact",
           *CARRIES_ON, ("fallback_at_handshake", "eq", True), ("initial_subflow_reset", "eq", False)),
        _e("fallback-infinite-mapping", "§3.7", "fallback by infinite mapping, without RST; data intact",
           *CARRIES_ON, ("mptcp_negotiated", "eq", True), ("fallback_later", "eq", True),
           ("initial_subflow_reset", "eq", False)),
        _e("join-reset-middlebox", "§3.7",
           "the join subflow is closed with RST and MP_TCPRST reason 6; the connection continues",
           *CARRIES_ON, ("join_reset_reasons", "has", "MIDDLEBOX_INTERFERENCE")),
        _e("join-not-established", "§3.2, §6", "the join subflow is not established; the connection continues",
           *CARRIES_ON, ("mptcp_negotiated", "eq", True), ("joins_completed", "eq", 0)),
        _e("join-synack-stripped", "§3.2", "the initiator closes the join subflow with RST",
           *CARRIES_ON, ("joins_completed", "eq", 0), ("join_reset_reasons", "nonempty", True)),
        _e("lb-unknown-token", "§3.2",
           "the other backend does not know the token: RST with MP_TCPRST 1 or 3; the connection continues",
           *CARRIES_ON, ("join_reset_reasons", "any-of", ["MPTCP_SPECIFIC", "ADMINISTRATIVELY_PROHIBITED"])),
        _e("payload-csum-single", "§3.7",
           "MP_FAIL; infinite mapping; fallback without RST; the changed bytes reach the application",
           ("connected", "eq", True), ("mp_fail_sent", "ge", 1), ("fallback_later", "eq", True),
           ("initial_subflow_reset", "eq", False), ("stalled", "eq", False)),
        _e("payload-csum-multi", "§3.7",
           "MP_FAIL and RST on the affected subflow; data retransmitted on the others, intact",
           *CARRIES_ON, ("mp_fail_sent", "ge", 1), ("checksum_errors", "ge", 1)),
        _e("payload-undetected", "§3.7", "not detectable without checksums: the application receives changed data",
           ("connected", "eq", True), ("stalled", "eq", False), ("checksum_errors", "eq", 0),
           ("changed_somewhere", "eq", True)),
        _e("length-change-csum", "§3.3.1, §3.7", "MP_FAIL and fallback; the connection carries on",
           ("connected", "eq", True), ("stalled", "eq", False), ("mp_fail_sent", "ge", 1),
           ("fallback_later", "eq", True)),
        _e("length-change-nocsum", "§3.3.1, §3.7",
           "the mapping no longer matches: the subflow is treated as broken or falls back; no stall",
           ("connected", "eq", True), ("stalled", "eq", False), ("broken_or_fallback", "eq", True)),
        _e("plain-tcp", "§6", "plain TCP (the middlebox does not speak MPTCP); data intact",
           *CARRIES_ON, ("fallback_at_handshake", "eq", True)),
        _e("add-addr-removed", "§3.4.1", "no subflow to the advertised address; the connection continues",
           *CARRIES_ON, ("add_addr_received", "eq", 0), ("joins_completed", "eq", 0)),
        _e("add-addr-ignored", "§3.4.1",
           "the rewritten ADD_ADDR fails its HMAC and is ignored: no subflow to it; the connection continues",
           *CARRIES_ON, ("joins_completed", "eq", 0)),
        _e("add-addr-retransmitted", "§3.4.1", "without its echo the sender retransmits ADD_ADDR; the connection continues",
           *CARRIES_ON, ("add_addr_sent", "ge", 2)),
        _e("flags-consistent", "§3.1", "each end follows the A flag it saw; data must not be corrupted",
           *CARRIES_ON),
    )
}  # fmt: skip


def _holds(value: Any, op: str, operand: Any) -> bool:
    if op == "eq":
        return value == operand
    if op == "ge":
        return value >= operand
    if op == "le":
        return value <= operand
    if op == "has":
        return operand in value
    if op == "nonempty":
        return bool([v for v in value if v != "none"]) == operand
    if op == "any-of":
        return bool(set(value) & set(operand))
    raise ValueError(f"unknown operator {op}")


def derived(facts: dict[str, Fact]) -> dict[str, Fact]:
    """Facts computed from others, for expectations that allow alternatives."""
    out = dict(facts)
    data = [f for name, f in facts.items() if name.startswith("data_")]
    if data:
        changed = any(f.value == "changed" for f in data)
        out["changed_somewhere"] = Fact(
            "changed_somewhere", changed, "; ".join(f"{f.name}: {f.value}" for f in data)
        )
    if "fallback_later" in facts and "initial_subflow_reset" in facts:
        value = facts["fallback_later"].value or facts["initial_subflow_reset"].value
        out["broken_or_fallback"] = Fact(
            "broken_or_fallback",
            value,
            f"{facts['fallback_later'].evidence}; {facts['initial_subflow_reset'].evidence}",
        )
    return out


def verdict(
    expectation: Expectation, facts: dict[str, Fact], has_middlebox: bool
) -> dict[str, Any]:
    """as-expected, deviates, inconclusive or error, with the facts that decided it."""
    facts = derived(facts)
    crashed = facts.get("middlebox_crashed")
    if crashed is not None:
        return {"verdict": "error", "why": [crashed.evidence]}
    if has_middlebox and not facts.get("middlebox_triggered", Fact("", False, "")).value:
        return {"verdict": "inconclusive", "why": ["the middlebox never changed a packet"]}
    missing = [name for name, _, _ in expectation.checks if name not in facts]
    if missing:
        return {"verdict": "inconclusive", "why": [f"no evidence for {name}" for name in missing]}
    differ = []
    for name, op, operand in expectation.checks:
        fact = facts[name]
        if not _holds(fact.value, op, operand):
            differ.append(f"{name} is {fact.value!r}, expected {op} {operand!r} ({fact.evidence})")
    return {"verdict": "deviates" if differ else "as-expected", "why": differ}
