"""The verdict: the observed facts against an expectation.

``error`` when the harness failed (a middlebox crashed), ``inconclusive`` when the
middlebox never acted or a needed fact is missing, ``deviates`` when something the RFC
forbids happened or no outcome it allows did, ``as-expected`` for the RFC's main outcome,
``permitted-variant`` for another outcome it allows (named, with its section and reason).
``not-run`` (a stopped run) and ``flaky`` (repeats that disagree) are given elsewhere.
"""

from __future__ import annotations

from typing import Any

from mbtest.verdict import facts as F
from mbtest.verdict.expect import OPERATORS, Check, Expectation, Outcome, said
from mbtest.verdict.facts import Fact

VERDICTS = (
    "as-expected",
    "permitted-variant",
    "deviates",
    "inconclusive",
    "error",
    "not-run",
    "flaky",
)
FINDINGS = ("deviates", "inconclusive", "flaky")  # verdicts a user has to look at


def _failing(checks: tuple[Check, ...], facts: dict[str, Fact]) -> list[str]:
    out = []
    for name, op, operand in checks:
        fact = facts[name]
        if not OPERATORS[op](fact.value, operand):
            out.append(f"{said(name, fact.value, op, operand)} ({fact.evidence})")
    return out


def _missing(checks: tuple[Check, ...], facts: dict[str, Fact]) -> list[str]:
    return [name for name, _, _ in checks if name not in facts]


def decide(expectation: Expectation, facts: dict[str, Fact], has_middlebox: bool) -> dict[str, Any]:
    """The verdict, why, and the outcome taken."""
    crashed = facts.get(F.MIDDLEBOX_CRASHED)
    if crashed is not None:
        return {"verdict": "error", "why": [crashed.evidence], "outcome": None}
    if has_middlebox and not facts.get(F.MIDDLEBOX_TRIGGERED, Fact("", False, "")).value:
        return {
            "verdict": "inconclusive",
            "why": ["the middlebox never changed a packet"],
            "outcome": None,
        }
    stall = [facts[F.STALL].value] if F.STALL in facts else []
    # a check that must always hold and fails is a deviation, even when facts it would
    # take to judge the rest are missing (a connection that never opened moved no data)
    broken = _failing(tuple(c for c in expectation.always if c[0] in facts), facts)
    if broken:
        return {"verdict": "deviates", "why": broken + stall, "outcome": None}
    missing = _missing((*expectation.always, *expectation.main.checks), facts)
    if missing:
        return {
            "verdict": "inconclusive",
            "why": [f"no evidence for {n}" for n in missing],
            "outcome": None,
        }
    if not _failing(expectation.main.checks, facts):
        return {"verdict": "as-expected", "why": [], "outcome": expectation.main.to_json()}
    for variant in expectation.variants:
        if not _missing(variant.checks, facts) and not _failing(variant.checks, facts):
            return {
                "verdict": "permitted-variant",
                "why": [_said(variant)],
                "outcome": variant.to_json(),
            }
    return {
        "verdict": "deviates",
        "why": _failing(expectation.main.checks, facts) + stall,
        "outcome": None,
    }


def _said(variant: Outcome) -> str:
    return f"{variant.name} ({variant.rfc}): {variant.text}. {variant.why}"
