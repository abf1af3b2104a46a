"""What others expect for the scenarios we share: the Linux kernel's MPTCP selftests
(tools/testing/selftests/net/mptcp/mptcp_join.sh), the MBtest results of the MPTCP
experience draft and the Linux answers of the implementation survey (../shared/seeds/),
written in our facts' words. Each cell says whether it agrees with them, and when it does
not, what its own evidence says instead (a stall's diagnosis, a merge across a mapping)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mbtest.verdict import facts as F
from mbtest.verdict.expect import OPERATORS, Check, said
from mbtest.verdict.facts import Fact

SELFTEST = "Linux selftests, tools/testing/selftests/net/mptcp/mptcp_join.sh"
EXPERIENCE = "draft-ietf-mptcp-experience, §3.1 (MBtest results)"
SURVEY = "draft-eardley-mptcp-implementations-survey, §7 Q4 (Linux's answers)"

COMPLETES = ((F.STALLED, "eq", False), (F.LOST_SOMEWHERE, "eq", False))
UNAFFECTED = ((F.FALLBACK_AT_HANDSHAKE, "eq", False), (F.FALLBACK_LATER, "eq", False), *COMPLETES)


@dataclass(frozen=True)
class Reference:
    source: str
    test: str  # which test or statement
    says: str  # what it expects, in words
    cells: tuple[str, ...]  # our cells for the same scenario (IPv6 twins included)
    expects: tuple[Check, ...]


REFERENCES = (
    Reference(
        SELFTEST,
        "fail_tests: 'Infinite map'",
        "one payload byte flipped under checksums on a single subflow: MP_FAIL, an "
        "infinite mapping from the client, the server falls back (DssFallback), no "
        "MP_RST, and the transfer completes",
        ("payload-flip-c2s-csum",),
        (
            (F.MP_FAIL_SENT, "ge", 1),
            (F.INFINITE_MAPPING_SENT, "ge", 1),
            (F.FALLBACK_LATER, "eq", True),
            (F.INITIAL_SUBFLOW_RESET, "eq", False),
            *COMPLETES,
        ),
    ),
    Reference(
        SELFTEST,
        "fail_tests: 'MP_FAIL MP_RST'",
        "one payload byte flipped under checksums on one of two subflows: one checksum "
        "error, MP_FAIL, the subflow reset, no infinite mapping, no fallback, and the "
        "transfer completes",
        ("payload-flip-two-subflows-csum",),
        (
            (F.CHECKSUM_ERRORS, "ge", 1),
            (F.MP_FAIL_SENT, "ge", 1),
            (F.INFINITE_MAPPING_SENT, "eq", 0),
            (F.FALLBACK_LATER, "eq", False),
            *COMPLETES,
        ),
    ),
    Reference(
        SELFTEST,
        "add_addr_timeout_tests (add_addr_timeout=1, echoes dropped)",
        "the announcer retransmits ADD_ADDR (4 sent with 3 retransmissions) and the join "
        "to the announced address still succeeds",
        ("add-addr-echo-dropped",),
        ((F.ADD_ADDR_SENT, "ge", 2), (F.JOINS_COMPLETED, "ge", 1)),
    ),
    Reference(
        EXPERIENCE, "NAT", "MPTCP unaffected behind a NAT", ("nat", "nat-join-path"), UNAFFECTED
    ),
    Reference(
        EXPERIENCE, "sequence number rewriting", "MPTCP unaffected", ("seq-rewrite",), UNAFFECTED
    ),
    Reference(
        EXPERIENCE,
        "MP_CAPABLE removed from the SYN",
        "the connection falls back to TCP",
        ("strip-mpc-syn-nop", "strip-mpc-syn-remove", "kernel-optstrip-syn"),
        ((F.FALLBACK_AT_HANDSHAKE, "eq", True), *COMPLETES),
    ),
    Reference(
        EXPERIENCE,
        "DSS removed from all data segments",
        "the connection falls back to TCP",
        ("strip-dss-data",),
        ((F.FALLBACK_LATER, "eq", True), *COMPLETES),
    ),
    Reference(
        EXPERIENCE,
        "MPTCP options replaced by EOL",
        "fallback to TCP without harm to the application",
        ("eol-after-syn",),
        ((F.FALLBACK_LATER, "eq", True), *COMPLETES),
    ),
    Reference(
        EXPERIENCE,
        "segment splitting and coalescing",
        "MPTCP continues",
        ("split", "coalesce-within-mapping", "coalesce-across-mappings"),
        UNAFFECTED,
    ),
    Reference(
        SURVEY,
        "checksum failure with several subflows",
        "the subflow is reset (RST)",
        ("payload-flip-two-subflows-csum",),
        ((F.MP_FAIL_SENT, "ge", 1), (F.CHECKSUM_ERRORS, "ge", 1)),
    ),
    Reference(
        SURVEY,
        "DSS missing on an additional subflow",
        "that subflow is reset",
        ("strip-dss-join-path",),
        ((F.JOIN_RESET_REASONS, "nonempty", True),),
    ),
)


def _base(name: str) -> str:
    return name[: -len("-ipv6")] if name.endswith("-ipv6") else name


def applicable(cell_name: str) -> list[Reference]:
    return [r for r in REFERENCES if _base(cell_name) in r.cells]


def compare(scenario: Any, facts: dict[str, Fact]) -> list[dict[str, Any]]:
    """For each reference on this cell's scenario: agrees, differs (with what the cell's own
    evidence says), or undecided (a fact it needs is missing)."""
    out = []
    for ref in applicable(scenario.name):
        missing = [name for name, _, _ in ref.expects if name not in facts]
        differs = [
            said(name, facts[name].value, op, operand)
            for name, op, operand in ref.expects
            if name in facts and not OPERATORS[op](facts[name].value, operand)
        ]
        entry: dict[str, Any] = {"source": ref.source, "test": ref.test, "says": ref.says}
        if missing:
            entry.update(agrees=None, differences=[f"no evidence for {m}" for m in missing])
        elif differs:
            entry.update(agrees=False, differences=differs, explanation=_explanation(facts))
        else:
            entry.update(agrees=True, differences=[])
        out.append(entry)
    return out


def _explanation(facts: dict[str, Fact]) -> str:
    """What this cell's own evidence says about the difference."""
    if F.STALL in facts:
        return str(facts[F.STALL].value)
    crossed = facts.get(F.MAPPING_CROSSED)
    if crossed is not None and crossed.value:
        return f"{crossed.value} segments carried data beyond their mapping: {crossed.evidence}"
    removed = facts.get(F.OPTION_REMOVED_FROM)
    if removed is not None and removed.value:
        return f"the middlebox removed options from: {', '.join(removed.value)}"
    return "the facts above; no known cause"
