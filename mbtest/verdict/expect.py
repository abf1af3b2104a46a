"""What RFC 8684 expects (MPTCP-REFERENCE §4), as data: what must always hold, the RFC's
main outcome, and the outcomes it also permits, each named with its section and reason.

A check is (fact, operator, operand): a fact named in ``mbtest.verdict.facts``, an
operator of ``OPERATORS``. The verdict (``mbtest.verdict.decide``) is ``as-expected`` when
the main outcome holds, ``permitted-variant`` when a permitted one does (named), and
``deviates`` when an "always" check fails or no outcome holds, naming the facts.

An expectation whose event waits for a timer names it (``Timer``): a unit test checks that
every cell of the grid that uses it keeps its connection open long enough for it.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from mbtest.jsondoc import plain
from mbtest.verdict import facts as F

Check = tuple[str, str, Any]

OPERATORS: dict[str, Callable[[Any, Any], bool]] = {
    "eq": lambda value, operand: value == operand,
    "ge": lambda value, operand: value >= operand,
    "le": lambda value, operand: value <= operand,
    "has": lambda value, operand: operand in value,  # a list contains it
    "lacks": lambda value, operand: operand not in value,
    "nonempty": lambda value, operand: bool([v for v in value if v != "none"]) == operand,
    "any-of": lambda value, operand: bool(set(value) & set(operand)),  # lists intersect
    "starts": lambda value, operand: any(str(v).startswith(operand) for v in value),
}
# how a check reads: "stalled is true, expected false"; "mp_fail_sent is 0, expected >= 1"
SAID = {
    "eq": "",
    "ge": ">= ",
    "le": "<= ",
    "has": "to include ",
    "lacks": "not to include ",
    "nonempty": "non-empty: ",
    "any-of": "one of ",
    "starts": "one starting with ",
}


def said(name: str, value: Any, op: str, operand: Any) -> str:
    """A failed check in words."""
    return f"{name} is {plain(value)}, expected {SAID[op]}{plain(operand)}"


@dataclass(frozen=True)
class Outcome:
    name: str
    text: str
    rfc: str
    checks: tuple[Check, ...]
    why: str = ""  # for a permitted variant: why the RFC allows it

    def to_json(self) -> dict[str, Any]:
        return {"name": self.name, "text": self.text, "rfc": self.rfc, "why": self.why}


@dataclass(frozen=True)
class Timer:
    """An event that waits for a timer: the connection must be held open past it."""

    what: str
    node: str
    sysctl: str
    default: float  # the kernel's default, in seconds


@dataclass(frozen=True)
class Expectation:
    name: str
    rfc: str
    always: tuple[Check, ...]  # what must hold whatever the outcome (forbidden outcomes)
    main: Outcome
    variants: tuple[Outcome, ...] = ()
    timer: Timer | None = None

    @property
    def text(self) -> str:
        return self.main.text

    @property
    def checks(self) -> tuple[Check, ...]:
        """Every check it makes (for the table's own tests)."""
        return (*self.always, *self.main.checks, *(c for v in self.variants for c in v.checks))

    def to_json(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "rfc": self.rfc,
            "text": self.text,
            "outcomes": [self.main.to_json(), *(v.to_json() for v in self.variants)],
        }


# never acceptable: an endpoint building packets its own path MTU refuses
FITS = ((F.REFUSED_LOCALLY, "eq", 0),)
INTACT = ((F.DATA_C2S, "eq", "intact"), (F.DATA_S2C, "eq", "intact"), (F.STALLED, "eq", False))
CARRIES_ON = ((F.CONNECTED, "eq", True), *INTACT, *FITS)
NO_RESET = ((F.INITIAL_SUBFLOW_RESET, "eq", False),)
COMPLETES = (
    (F.CONNECTED, "eq", True),
    (F.STALLED, "eq", False),
    (F.LOST_SOMEWHERE, "eq", False),
    *FITS,
)

UNMAPPED_FALLBACK = Outcome(
    "fallback after data outside its mapping",
    "a segment carried data beyond the mapping it carries (merged across a mapping boundary); "
    "the receiver treated the unmapped data as broken and fell back to TCP, data intact",
    "§3.3.1",
    ((F.MAPPING_CROSSED, "ge", 1), (F.FALLBACK_LATER, "eq", True), *NO_RESET),
    "§3.3.1: data outside any mapping MAY be held or treated as broken; falling back is a "
    "permitted way to carry on",
)
FIRST_PACKET_FALLBACK = Outcome(
    "fallback on a first packet without DSS",
    "the first packet after the handshake lost its only MPTCP option, and the receiver fell "
    "back to TCP; data intact",
    "§3.7",
    ((F.OPTION_REMOVED_FROM, "starts", "first packet after the handshake"),
     (F.FALLBACK_LATER, "eq", True), *NO_RESET),
    "Linux requires the first packet after the handshake to carry DSS or MP_CAPABLE and falls "
    "back otherwise: stricter than §3.7, which asks for fallback only when data arrives "
    "without a mapping",
)  # fmt: skip


def _e(
    name: str,
    rfc: str,
    always: tuple[Check, ...],
    main: Outcome,
    *variants: Outcome,
    timer: Timer | None = None,
) -> Expectation:
    return Expectation(name, rfc, always, main, variants, timer)


def _main(text: str, rfc: str, *checks: Check) -> Outcome:
    return Outcome("main", text, rfc, checks)


EXPECTATIONS = {
    e.name: e
    for e in (
        _e("mptcp-unaffected", "§3, §6", CARRIES_ON,
           _main("MPTCP on all subflows; data intact", "§3, §6",
                 (F.MPTCP_NEGOTIATED, "eq", True), (F.FALLBACK_AT_HANDSHAKE, "eq", False),
                 (F.FALLBACK_LATER, "eq", False), *NO_RESET),
           UNMAPPED_FALLBACK),
        _e("mptcp-with-joins", "§3.2, §6", CARRIES_ON,
           _main("MPTCP; joins authenticate by token and complete; data intact", "§3.2, §6",
                 (F.MPTCP_NEGOTIATED, "eq", True), (F.FALLBACK_LATER, "eq", False),
                 (F.JOINS_COMPLETED, "ge", 1))),
        _e("fallback-at-handshake", "§3.1, §3.7, §6", CARRIES_ON,
           _main("plain TCP from the handshake on; data intact", "§3.1",
                 (F.FALLBACK_AT_HANDSHAKE, "eq", True), *NO_RESET)),
        _e("fallback-without-dss", "§3.7", CARRIES_ON,
           _main("data without a mapping makes the connection fall back to TCP without RST; data "
                 "intact (the sender's infinite mapping, §3.7, is stripped like every DSS)",
                 "§3.7", (F.MPTCP_NEGOTIATED, "eq", True), (F.FALLBACK_LATER, "eq", True),
                 *NO_RESET)),
        _e("join-reset-middlebox", "§3.7", CARRIES_ON,
           _main("the join subflow is closed with RST and MP_TCPRST reason 6; the connection "
                 "continues", "§3.7", (F.JOIN_RESET_REASONS, "has", "MIDDLEBOX_INTERFERENCE"))),
        _e("join-not-established", "§3.2, §6", CARRIES_ON,
           _main("the join subflow is not established; the connection continues", "§3.2",
                 (F.MPTCP_NEGOTIATED, "eq", True), (F.JOINS_COMPLETED, "eq", 0))),
        _e("join-synack-stripped", "§3.2", CARRIES_ON,
           _main("the initiator closes the join subflow with RST", "§3.2",
                 (F.JOINS_COMPLETED, "eq", 0), (F.JOIN_RESET_REASONS, "nonempty", True))),
        _e("lb-unknown-token", "§3.2", CARRIES_ON,
           _main("the other backend does not know the token: RST with MP_TCPRST 1 or 3; the "
                 "connection continues", "§3.2",
                 (F.JOIN_RESET_REASONS, "any-of", ["MPTCP_SPECIFIC", "ADMINISTRATIVELY_PROHIBITED"]))),
        _e("payload-csum-single", "§3.7", COMPLETES,
           _main("MP_FAIL; infinite mapping; fallback without RST; the transfer completes and the "
                 "changed bytes reach the application", "§3.7",
                 (F.MP_FAIL_SENT, "ge", 1), (F.INFINITE_MAPPING_SENT, "ge", 1),
                 (F.FALLBACK_LATER, "eq", True), *NO_RESET, (F.CHANGED_SOMEWHERE, "eq", True)),
           Outcome("reset with MP_FAIL", "the subflow is closed with RST and MP_FAIL", "§3.7",
                   ((F.MP_FAIL_SENT, "ge", 1), (F.INITIAL_SUBFLOW_RESET, "eq", True)),
                   "§3.7: when the data in flight is not contiguous the receiver MUST reset the "
                   "subflow instead")),
        _e("payload-csum-multi", "§3.7", CARRIES_ON,
           _main("MP_FAIL and RST on the affected subflow; data retransmitted on the others, "
                 "intact", "§3.7", (F.MP_FAIL_SENT, "ge", 1), (F.CHECKSUM_ERRORS, "ge", 1))),
        _e("payload-undetected", "§3.7", COMPLETES,
           _main("not detectable without checksums: the application receives changed data",
                 "§3.7", (F.CHECKSUM_ERRORS, "eq", 0), (F.CHANGED_SOMEWHERE, "eq", True))),
        _e("length-change-csum", "§3.3.1, §3.7", COMPLETES,
           _main("the checksum catches the length change: MP_FAIL, infinite mapping, fallback; "
                 "the rewritten data reaches the application", "§3.7",
                 (F.MP_FAIL_SENT, "ge", 1), (F.FALLBACK_LATER, "eq", True), *NO_RESET),
           Outcome("reset with MP_FAIL", "MP_FAIL and RST on the subflow", "§3.7",
                   ((F.MP_FAIL_SENT, "ge", 1), (F.INITIAL_SUBFLOW_RESET, "eq", True)),
                   "§3.7: after a length change the data in flight may not be contiguous; the "
                   "receiver then resets the subflow")),
        _e("length-change-nocsum", "§3.3.1, §3.7", ((F.CONNECTED, "eq", True), (F.STALLED, "eq", False), *FITS),
           _main("the mapping no longer matches the data: the receiver falls back to TCP", "§3.3.1",
                 (F.FALLBACK_LATER, "eq", True), *NO_RESET),
           Outcome("treated as broken", "the subflow is treated as broken and reset", "§3.7",
                   ((F.INITIAL_SUBFLOW_RESET, "eq", True),),
                   "§3.7: a subflow whose mapping no longer matches SHOULD be treated as broken "
                   "and closed with RST")),
        _e("plain-tcp", "§6", CARRIES_ON,
           _main("plain TCP (the middlebox does not speak MPTCP); data intact", "§6",
                 (F.FALLBACK_AT_HANDSHAKE, "eq", True))),
        _e("add-addr-removed", "§3.4.1", CARRIES_ON,
           _main("no subflow to the advertised address; the connection continues as MPTCP",
                 "§3.4.1", (F.ADD_ADDR_RECEIVED, "eq", 0), (F.JOINS_COMPLETED, "eq", 0),
                 (F.FALLBACK_LATER, "eq", False)),
           FIRST_PACKET_FALLBACK),
        _e("add-addr-ignored", "§3.4.1", CARRIES_ON,
           _main("the rewritten ADD_ADDR fails its HMAC and is ignored: no subflow to it; the "
                 "connection continues", "§3.4.1", (F.JOINS_COMPLETED, "eq", 0),
                 (F.FALLBACK_LATER, "eq", False))),
        _e("add-addr-retransmitted", "§3.4.1", CARRIES_ON,
           _main("without its echo the sender retransmits ADD_ADDR; the connection continues",
                 "§3.4.1", (F.ADD_ADDR_SENT, "ge", 2)),
           timer=Timer("ADD_ADDR retransmission", "server", "net.mptcp.add_addr_timeout", 120)),
        _e("flags-consistent", "§3.1", CARRIES_ON,
           _main("each end follows the A flag it saw; data must not be corrupted", "§3.1")),
    )
}  # fmt: skip
