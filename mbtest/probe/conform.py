"""Conformance probes: drive the target, from userspace, into one RFC 8684 situation and
judge what it answers.

A path probe sweeps one segment over every TTL and asks what the path changed; a conformance
probe plays a short exchange (a handshake, a good mapping, then the segment the RFC speaks
of) and asks what the far endpoint did about it: fall back, send MP_FAIL, reset (with which
MP_TCPRST reason) or ignore. The exchange is recorded packet by packet (what was sent, what
came back, raw bytes kept), so the verdict can be recomputed from a result file without
root, and a reader sees the evidence.

A conformance probe file defines, beside the path probe's ``NAME`` and docstring:

- ``SUITE = "conformance"``, ``RFC`` (the section) and ``QUOTE`` (the sentence checked);
- ``OUTCOMES``: outcome name -> (verdict, why), the outcomes the RFC allows (``as-expected``
  or ``permitted-variant``); any other outcome ``deviates``;
- ``exercise(session, exchange)``: plays the exchange (``exchange.send``, ``exchange.listen``);
- ``judge(recorded, context)``: the outcome name and a sentence saying why, from the
  target's answers to each step (``recorded.answers(step)``) and what ``exercise`` put in
  ``exchange.context`` (plain JSON values).
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mbtest import jsondoc
from mbtest.errors import PacketError
from mbtest.host import signals
from mbtest.mptcp.fields import short
from mbtest.mptcp.options import Dss, MpFail, MpFastclose, MptcpOption, MpTcpRst
from mbtest.packet.headers import TcpSegment, parse_tcp
from mbtest.probe import wire


@dataclass
class Step:
    """One packet of the exchange: sent by the probe or answered by the target."""

    direction: str  # "sent" or "answer"
    step: str  # the probe's name for the moment (the segment it sent, or answers to it)
    time: float  # seconds since the exchange began
    segment: TcpSegment

    def to_json(self) -> dict[str, Any]:
        seg = self.segment
        try:
            options = [
                short(o) if isinstance(o, MptcpOption) else str(o) for o in seg.mptcp_options()
            ]
        except PacketError as e:
            options = [f"malformed: {e}"]
        doc: dict[str, Any] = {
            "direction": self.direction,
            "step": self.step,
            "after_seconds": round(self.time, 4),
            "flow": f"{seg.src}:{seg.sport} > {seg.dst}:{seg.dport}",
            "flags": seg.flag_string,
            "seq": seg.seq,
            "ack": seg.ack,
            "payload_length": len(seg.payload),
            "mptcp": options,
            "options_hex": seg.options_raw.hex(),
            "payload_hex": seg.payload[:256].hex(),
        }
        reason = rst_reason(seg)
        if reason is not None:
            doc["mp_tcprst"] = reason
        return doc


def step_from_json(doc: dict[str, Any], version: int) -> Step:
    """A recorded step back as a segment (what ``judge`` reads), for recomputing verdicts."""
    src_port, dst_port = (part.rsplit(":", 1) for part in doc["flow"].split(" > "))
    flags = 0
    for letter, bit in zip("FSRPAUECN", (1, 2, 4, 8, 16, 32, 64, 128, 256), strict=True):
        if letter in doc["flags"]:
            flags |= bit
    seg = TcpSegment(
        version,
        src_port[0],
        dst_port[0],
        64,
        0,
        int(src_port[1]),
        int(dst_port[1]),
        int(doc["seq"]),
        int(doc["ack"]),
        flags,
        0,
        0,
        0,
        bytes.fromhex(doc["options_hex"]),
        bytes.fromhex(doc["payload_hex"]).ljust(int(doc["payload_length"]), b"\0"),
    )
    return Step(doc["direction"], doc["step"], float(doc["after_seconds"]), seg)


class Answers(list):
    """The target's answers (segments), in order, with the questions judges ask of them."""

    def options(self, kind: type) -> list[tuple[TcpSegment, MptcpOption]]:
        found = []
        for seg in self:
            with _readable():
                found += [(seg, o) for o in seg.mptcp_options() if isinstance(o, kind)]
        return found

    def resets(self) -> list[TcpSegment]:
        return [seg for seg in self if seg.rst]

    def reset_text(self) -> str:
        """``a RST (MP_TCPRST reason X)``, as the judges say it."""
        reason = self.first_reset_reason()
        return f"a RST ({'MP_TCPRST reason ' + reason if reason else 'no MP_TCPRST'})"

    def first_reset_reason(self) -> str | None:
        """The MP_TCPRST reason of the first RST (None: no RST, or one without MP_TCPRST)."""
        for seg in self.resets():
            return rst_reason(seg)
        return None

    def mp_fail(self) -> bool:
        return bool(self.options(MpFail))

    def fastclose(self) -> bool:
        return bool(self.options(MpFastclose))

    def plain_acks(self) -> list[TcpSegment]:
        """Segments with no MPTCP option at all and no RST: the target speaks plain TCP."""
        out = []
        for seg in self:
            if seg.rst:
                continue
            with _readable():
                if not seg.mptcp_options():
                    out.append(seg)
        return out

    def data_acks(self) -> list[int]:
        """The data-level acknowledgements the target sent (DSS data ack), in order."""
        return [o.data_ack for _, o in self.options(Dss) if o.data_ack is not None]

    def infinite_mapping(self) -> bool:
        return any(o.infinite_mapping for _, o in self.options(Dss))

    def acked_up_to(self, seq: int) -> bool:
        """Whether a (non-RST) answer acknowledges, at the TCP level, up to ``seq``."""
        return any(
            not s.rst and s.is_ack and ((s.ack - seq) & 0xFFFFFFFF) < (1 << 31) for s in self
        )

    def describe(self) -> str:
        if not self:
            return "no answer"
        return "; ".join(_one_line(seg) for seg in self[:4]) + (
            f" (and {len(self) - 4} more)" if len(self) > 4 else ""
        )


def _one_line(seg: TcpSegment) -> str:
    try:
        options = ", ".join(short(o) for o in seg.mptcp_options() if isinstance(o, MptcpOption))
    except PacketError:
        options = "malformed options"
    return (
        f"{seg.flag_string}"
        + (f" [{options}]" if options else "")
        + (f" {len(seg.payload)} bytes" if seg.payload else "")
    )


def rst_reason(seg: TcpSegment) -> str | None:
    if not seg.rst:
        return None
    try:
        for option in seg.mptcp_options():
            if isinstance(option, MpTcpRst):
                return option.reason_name
    except PacketError:
        return None
    return None


class _readable:
    """A malformed answer's options count as none (its step keeps the error)."""

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, value, tb) -> bool:
        return kind is not None and issubclass(kind, PacketError)


@dataclass
class Recorded:
    """The steps of an exchange, as played or as read back from a result file."""

    steps: list[Step] = field(default_factory=list)

    def answers(self, step: str | None = None) -> Answers:
        """What the target answered (to ``step`` only, when given), in order."""
        return Answers(
            s.segment
            for s in self.steps
            if s.direction == "answer" and (step is None or s.step == step)
        )


@dataclass
class Exchange(Recorded):
    """The packets of one conformance probe as it plays: every segment the session sends
    and every answer it reads (the handshake's too) is recorded under the current step."""

    session: Any = None  # a probe Session: sends through its sockets, knows the target
    context: dict[str, Any] = field(default_factory=dict)
    started: float = field(default_factory=time.monotonic)
    step: str = "handshake"

    def __post_init__(self) -> None:
        self.session.recorder = self.record

    def record(self, direction: str, seg: wire.Segment | TcpSegment, at: float) -> None:
        if isinstance(seg, wire.Segment):
            parsed = parse_tcp(wire.packet(seg, 64, 0, 0))
            if parsed is None:
                return
            seg = parsed
        self.steps.append(Step(direction, self.step, at - self.started, seg))

    def send(self, seg: wire.Segment, step: str) -> None:
        """Send one segment at full TTL, as the start of ``step``."""
        self.step = step
        self.session.send(seg)

    def send_data(self, conn: Any, segment: wire.Segment, step: str) -> Answers:
        """Send a data segment of ``conn`` as ``step`` and wait until the target acknowledges
        it at the TCP level (or resets, or the wait ends); the context says where the data
        ends (``end_seq``, and ``data_end`` in the data sequence space)."""
        end = (segment.seq + len(segment.payload)) & 0xFFFFFFFF
        self.context.update(end_seq=end, data_end=conn.data_end())
        self.send(segment, step)
        timeout = self.session.timeout
        return self.listen(conn.sport, timeout, until=lambda got: got.acked_up_to(end))

    def listen(
        self, sport: int, seconds: float, until: Callable[[Answers], bool] | None = None
    ) -> Answers:
        """The target's answers to local port ``sport`` for ``seconds`` (less once ``until``
        holds for what came since, or at a RST); each is recorded under the current step."""
        session = self.session
        got = Answers()
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            signals.check()
            for arrival in session.io.receive(end):
                seg = arrival.tcp
                if seg is None or seg.src != session.target or seg.sport != session.port:
                    continue
                if seg.dport != sport:
                    continue
                got.append(seg)
                self.record("answer", seg, arrival.time)
            if got and (any(s.rst for s in got) or (until is not None and until(got))):
                break
        return got


def verdict_of(outcome: str, outcomes: dict[str, tuple[str, str]]) -> tuple[str, str]:
    """(verdict, why the RFC allows it) for a judged outcome; anything the RFC does not allow
    deviates, an exchange the target never answered is ``no-answer``, and one whose control
    failed (the path does not carry what the case needs) is ``inconclusive``."""
    if outcome == "no-answer":
        return "no-answer", "the target did not answer the probe's segment"
    if outcome == "inconclusive":
        return "inconclusive", "the answers cannot tell the target's behaviour from the path's"
    if outcome in outcomes:
        return outcomes[outcome]
    allowed = "; ".join(f"{name} ({why})" for name, (_, why) in outcomes.items())
    return "deviates", f"the RFC allows only: {allowed}"


def play(spec: Any, session: Any) -> dict[str, Any]:
    """Run one conformance probe: its exchange, then its judge; the result as the probe
    document holds it (the exchange recorded packet by packet)."""
    from mbtest.probe.session import ProbeSetupError

    module = spec.module
    exchange = Exchange(session=session)
    setup_failed = None
    try:
        module.exercise(session, exchange)
    except ProbeSetupError as e:  # the situation could not be reached: said, not judged
        setup_failed = str(e)
        exchange.context["setup_silent"] = e.silent
    finally:
        session.recorder = None
    return result(
        spec,
        exchange.steps,
        exchange.context,
        session.notes,
        setup_failed,
        time.monotonic() - exchange.started,
    )


def result(
    spec: Any,
    steps: list[Step],
    context: dict[str, Any],
    notes: list[str],
    setup_failed: str | None,
    seconds: float,
) -> dict[str, Any]:
    """The probe's entry in the result document, judged from its recorded steps."""
    module = spec.module
    if setup_failed is not None:  # silent: no-answer; else the path or target is in the way
        outcome = "no-answer" if context.get("setup_silent", True) else "inconclusive"
        why = f"the situation could not be set up: {setup_failed}"
    else:
        recorded = Recorded(steps)
        failed = control_failed(recorded, context)
        outcome, why = ("inconclusive", failed) if failed else module.judge(recorded, context)
    verdict, allowed = verdict_of(outcome, module.OUTCOMES)
    doc: dict[str, Any] = {
        "name": spec.name,
        "summary": spec.summary,
        "suite": "conformance",
        "notes": notes,
        "hops": [],
        "first_change": None,
        "destination": None,
        "seconds": round(seconds, 3),
        "conformance": {
            "rfc": module.RFC,
            "quote": module.QUOTE,
            "accepts": {name: {"verdict": v, "why": w} for name, (v, w) in module.OUTCOMES.items()},
            "outcome": outcome,
            "verdict": verdict,
            "why": why,
            "rfc_says": allowed,
            "exchange": [s.to_json() for s in steps],
            "context": context,
        },
    }
    if setup_failed is not None:
        doc["setup_failed"] = True
        doc["error"] = setup_failed
    return doc


def rejudge(spec: Any, probe_doc: dict[str, Any], version: int) -> dict[str, Any]:
    """The verdict again from a recorded result (no network): what the tests of the verdict
    logic and a reader re-checking an old file use."""
    recorded = probe_doc["conformance"]
    steps = [step_from_json(s, version) for s in recorded["exchange"]]
    context = {  # (64-bit values come back as the decimal strings they were written as)
        k: jsondoc.number(v) if k in jsondoc.U64_KEYS else v
        for k, v in recorded.get("context", {}).items()
    }
    return result(
        spec,
        steps,
        context,
        list(probe_doc.get("notes", [])),
        probe_doc.get("error") if probe_doc.get("setup_failed") else None,
        float(probe_doc.get("seconds", 0)),
    )


def data_outcome(got: Answers, end_seq: int, data_end: int | None = None) -> tuple[str, str]:
    """What the target did with data the probe sent: the outcome the probes' judges share.
    ``end_seq`` is the TCP sequence number after the data, ``data_end`` the data sequence
    number after it (None when the data had no mapping)."""
    if not got:
        return "no-answer", "the target sent nothing back within the wait"
    if got.mp_fail():
        if got.resets():
            return "mp-fail-then-reset", f"MP_FAIL, then {got.reset_text()}: {got.describe()}"
        return "mp-fail", f"MP_FAIL: {got.describe()}"
    if got.resets():
        return "reset", f"{got.reset_text()}: {got.describe()}"
    if not got.acked_up_to(end_seq):
        return "not-acked", f"the data was not acknowledged: {got.describe()}"
    if got.plain_acks():
        return "fallback", f"acknowledged by plain TCP (no MPTCP option): {got.describe()}"
    acks = got.data_acks()
    if data_end is not None and any(data_ack_covers(a, data_end) for a in acks):
        return "mptcp-acked", f"acknowledged at the data level: {got.describe()}"
    return "held", (
        "acknowledged at the TCP level but not at the data level (the data is not delivered "
        f"as MPTCP data): {got.describe()}"
    )


def data_ack_covers(data_ack: int, data_end: int) -> bool:
    """Whether a data ack reaches ``data_end`` (compared on the low 32 bits, which a 4-byte
    data ack carries and an 8-byte one includes)."""
    return ((data_ack - data_end) & 0xFFFFFFFF) < (1 << 31)


def reset_outcome(got: Answers, silence: str, otherwise: str) -> tuple[str, str]:
    """The judge of a case the RFC answers with a RST: ``reset`` (its MP_TCPRST reason
    said), ``no-answer`` (``silence`` says what that means) or ``otherwise``."""
    if not got:
        return "no-answer", silence
    if got.resets():
        return "reset", got.reset_text()
    return otherwise, f"no RST: {got.describe()}"


def mp_fail_outcome(got: Answers, context: dict[str, Any]) -> tuple[str, str]:
    """The judge of a wrong DSS checksum: MP_FAIL expected, naming the failed mapping's data
    sequence number (``context["failed_dsn"]``)."""
    outcome, why = data_outcome(got, context["end_seq"], context.get("data_end"))
    if outcome == "fallback":
        why = (
            "no MP_FAIL: the target fell back to plain TCP without telling the sender which "
            f"data failed its checksum ({why})"
        )
    elif not outcome.startswith("mp-fail") and outcome != "no-answer":
        why = f"no MP_FAIL: {why}"
    if outcome.startswith("mp-fail"):
        named = [o.dsn for _, o in got.options(MpFail)]
        expected = context["failed_dsn"]
        if any(((dsn - expected) & 0xFFFFFFFF) == 0 for dsn in named):
            why += f"; it names the failed mapping (data sequence {expected})"
        else:
            why += f"; it names data sequence {named[0]}, not the failed mapping's {expected}"
    return outcome, why


CONTROL = "control"
CONTROL_PAYLOAD = b"mbtest conformance control: a good mapping, acknowledged at the data level\n"


def control_mapping(session: Any, exchange: Exchange, conn: Any = None, checksums: bool = False):
    """The control of a case that needs MPTCP data signalling to cross the path both ways: a
    good mapping (on ``conn``, or on a connection of its own) that the target acknowledges
    at the data level. When it is not, the case's answer describes the path as much as the
    target, and the verdict is ``inconclusive`` whatever the judge would say. Returns the
    connection."""
    if conn is None:
        exchange.step = CONTROL
        conn = session.handshake(checksums=checksums)
    segment = conn.data(CONTROL_PAYLOAD, conn.data_mapping(CONTROL_PAYLOAD))
    end = conn.data_end()
    exchange.context["control_data_end"] = end
    exchange.send(segment, CONTROL)
    exchange.listen(
        conn.sport,
        session.timeout,
        until=lambda got: any(data_ack_covers(a, end) for a in got.data_acks()),
    )
    return conn


def control_failed(recorded: Recorded, context: dict[str, Any]) -> str | None:
    """Why the exchange's control failed (None: it passed, or the case has none)."""
    if "control_data_end" not in context:
        return None
    got = recorded.answers(CONTROL)
    if any(data_ack_covers(a, context["control_data_end"]) for a in got.data_acks()):
        return None
    return (
        "the control (a good mapping) was not acknowledged at the data level "
        f"({got.describe()}): the path or the target does not carry MPTCP data signalling "
        "both ways here, so the answer to the case says nothing certain about the RFC rule"
    )


CHECKSUM_QUOTE = (
    "In this case, if a receiver identifies a checksum failure when there is only one path, "
    "it will send back an MP_FAIL option on the subflow-level ACK, referring to the "
    "data-level sequence number of the start of the segment on which the checksum error "
    "was detected."
)
CHECKSUM_OUTCOMES = {
    "mp-fail": ("as-expected", "§3.7: MP_FAIL on the subflow-level ACK, one path"),
    "mp-fail-then-reset": (
        "permitted-variant",
        "§3.7: a subflow whose data cannot be recovered is closed with a RST featuring MP_FAIL",
    ),
}
RST_GRACE = 0.3  # seconds: how long a RST after an MP_FAIL is waited for


def send_bad_checksum(session: Any, exchange: Exchange, conn: Any, payload: bytes) -> None:
    """The next data of ``conn`` under a mapping whose DSS checksum is wrong, as the step
    "bad checksum"; waits for MP_FAIL, then a moment more for a RST that may follow it."""
    mapping = conn.data_mapping(payload)
    bad = conn.data(payload, dataclasses.replace(mapping, checksum=mapping.checksum ^ 0x5A5A))
    end = (bad.seq + len(payload)) & 0xFFFFFFFF
    exchange.context.update(end_seq=end, failed_dsn=mapping.dsn, data_end=conn.data_end())
    exchange.send(bad, "bad checksum")
    if exchange.listen(conn.sport, session.timeout, until=lambda got: got.mp_fail()).mp_fail():
        exchange.listen(conn.sport, RST_GRACE)


# RFC sentences that two cases each check
FASTCLOSE_QUOTE = (
    "Upon receipt of an ACK with MP_FASTCLOSE by Host B, containing the valid key, Host B "
    "answers on the same subflow with a TCP RST and tears down all subflows also through "
    "sending TCP RST signals."
)
THIRD_ACK_QUOTE = (
    "If the third packet (the ACK) does not contain the MP_CAPABLE option, then the session "
    "MUST fall back to operating as a regular, single-path TCP."
)
