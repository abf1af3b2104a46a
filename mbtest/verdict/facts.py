"""The observed outcome: facts derived from a run's evidence, each citing that evidence.

Every fact is named once here, with what it means; expectations and the report refer to
these constants, so a mistyped name fails at import time, not as a silent "inconclusive".
Pure: a function of the run document (counters, socket info, transfer, timelines,
middlebox state) and the middlebox's ground-truth log. No fact is assumed: one that the
evidence cannot establish is absent, and the verdict then says "inconclusive".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

from mbtest.middlebox.spec import MiddleboxSpec

FACTS: dict[str, str] = {}  # name -> what it means


def _fact(name: str, meaning: str) -> str:
    FACTS[name] = meaning
    return name


CONNECTED = _fact("connected", "the client's connect() succeeded and the server accepted it")
MIDDLEBOX_CRASHED = _fact("middlebox_crashed", "a middlebox process died or never started")
MIDDLEBOX_TRIGGERED = _fact(
    "middlebox_triggered",
    "the middlebox changed at least one packet (a passive one: saw at least one)",
)
MPTCP_NEGOTIATED = _fact("mptcp_negotiated", "the client received MP_CAPABLE in the SYN/ACK")
FALLBACK_AT_HANDSHAKE = _fact(
    "fallback_at_handshake", "the connection became plain TCP during the handshake"
)
FALLBACK_LATER = _fact(
    "fallback_later", "an established MPTCP connection fell back to TCP (either end)"
)
MPTCP_AT_END = _fact("mptcp_at_end", "per side: MPTCP_INFO still answers after the transfer")
SUBFLOWS_ESTABLISHED = _fact("subflows_established", "client subflows in ESTABLISHED at the end")
JOINS_ATTEMPTED = _fact("joins_attempted", "MP_JOIN SYNs the client sent")
JOINS_COMPLETED = _fact("joins_completed", "MP_JOIN third ACKs the server accepted")
MP_FAIL_SENT = _fact("mp_fail_sent", "MP_FAIL options sent (both ends)")
MP_FAIL_RECEIVED = _fact("mp_fail_received", "MP_FAIL options received (both ends)")
CHECKSUM_ERRORS = _fact("checksum_errors", "DSS checksum failures detected (both ends)")
FASTCLOSE = _fact("fastclose", "MP_FASTCLOSE sent (both ends)")
ADD_ADDR_SENT = _fact("add_addr_sent", "ADD_ADDR options sent, retransmissions included")
ADD_ADDR_RECEIVED = _fact("add_addr_received", "ADD_ADDR options accepted")
ADD_ADDR_ECHOED = _fact("add_addr_echoed", "ADD_ADDR echoes sent")
ADD_ADDR_DROPPED = _fact("add_addr_dropped", "ADD_ADDR options dropped by the receiver")
JOIN_NO_TOKEN = _fact("join_no_token", "MP_JOIN SYNs whose token the receiver did not know")
JOIN_RESET_REASONS = _fact(
    "join_reset_reasons",
    "MP_TCPRST reasons of the resets seen on join subflows ('none': RST without MP_TCPRST)",
)
INITIAL_SUBFLOW_RESET = _fact("initial_subflow_reset", "a RST was seen on the initial subflow")
STALLED = _fact("stalled", "the transfer stopped making progress before it completed")
DATA_C2S = _fact("data_c2s", "client-to-server data: intact, changed or lost")
DATA_S2C = _fact("data_s2c", "server-to-client data: intact, changed or lost")
CHANGED_SOMEWHERE = _fact("changed_somewhere", "data arrived changed in at least one direction")
BROKEN_OR_FALLBACK = _fact(
    "broken_or_fallback", "the initial subflow was reset or the connection fell back later"
)

FALLBACK_HANDSHAKE_COUNTERS = ("MPCapableFallbackSYNACK", "MPCapableFallbackACK")
FALLBACK_LATER_COUNTERS = (
    "InfiniteMapTx",
    "InfiniteMapRx",
    "DssFallback",
    "DSSCorruptionFallback",
    "MPCapableDataFallback",
)
COUNTED = (  # facts that are one MPTcpExt counter summed over both ends
    (MP_FAIL_SENT, "MPFailTx"),
    (MP_FAIL_RECEIVED, "MPFailRx"),
    (CHECKSUM_ERRORS, "DataCsumErr"),
    (FASTCLOSE, "MPFastcloseTx"),
    (ADD_ADDR_SENT, "AddAddrTx"),
    (ADD_ADDR_RECEIVED, "AddAddr"),
    (ADD_ADDR_ECHOED, "EchoAddTx"),
    (ADD_ADDR_DROPPED, "AddAddrDrop"),
    (JOIN_NO_TOKEN, "MPJoinNoTokenFound"),
)


@dataclass(frozen=True)
class Fact:
    name: str
    value: Any
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Counters = dict[str, dict[str, int]]


def _count(counters: Counters, side: str, *names: str) -> int:
    return sum(counters.get(side, {}).get(n, 0) for n in names)


def _cite(counters: Counters, *names: str) -> str:
    parts = [
        f"{side}.{n}+{v}"
        for side, deltas in counters.items()
        for n, v in deltas.items()
        if n in names
    ]
    return ", ".join(parts) or f"no change in {', '.join(names)}"


class _Facts(dict):
    def add(self, name: str, value: Any, evidence: str) -> None:
        assert name in FACTS, name
        self[name] = Fact(name, value, evidence)


def _passive(mb: dict[str, Any]) -> bool:
    if "passive" in mb:
        return bool(mb["passive"])
    return MiddleboxSpec.parse(mb["behaviour"]).behaviour_class.PASSIVE


def _middlebox(facts: _Facts, doc: dict[str, Any], log: list[dict[str, Any]]) -> None:
    boxes = doc.get("middleboxes", {})
    for mb in boxes.values():
        if mb.get("crashed"):
            facts.add(MIDDLEBOX_CRASHED, True, mb["crashed"])
    if boxes:
        passive = all(_passive(mb) for mb in boxes.values())
        packets = sum(mb.get("packets", 0) for mb in boxes.values())
        changes = [e for e in log if e.get("field") != "malformed"]
        triggered = bool(changes) or (passive and packets > 0)
        facts.add(
            MIDDLEBOX_TRIGGERED,
            triggered,
            f"{len(changes)} changes in the middlebox log, {packets} packets seen",
        )


def _handshake(facts: _Facts, counters: Counters) -> None:
    mptcp_syn = _count(counters, "client", "MPCapableSYNACKRX") > 0
    facts.add(
        MPTCP_NEGOTIATED,
        mptcp_syn,
        _cite(counters, "MPCapableSYNTX", "MPCapableSYNACKRX", "MPCapableACKRX"),
    )
    fell_back = sum(
        _count(counters, side, *FALLBACK_HANDSHAKE_COUNTERS) for side in ("client", "server")
    )
    facts.add(
        FALLBACK_AT_HANDSHAKE,
        fell_back > 0 or not mptcp_syn,
        _cite(counters, *FALLBACK_HANDSHAKE_COUNTERS, "MPCapableSYNACKRX"),
    )
    later = sum(_count(counters, side, *FALLBACK_LATER_COUNTERS) for side in ("client", "server"))
    facts.add(FALLBACK_LATER, later > 0, _cite(counters, *FALLBACK_LATER_COUNTERS))


def _sockets(facts: _Facts, sockets: dict[str, Any]) -> None:
    ends = {side: report.get("mptcp") for side, report in sockets.items()}
    facts.add(
        MPTCP_AT_END,
        ends,
        "MPTCP_INFO "
        + ", ".join(
            f"{side}: {'ok' if ok else 'EOPNOTSUPP (fell back)'}" for side, ok in ends.items()
        ),
    )
    subflows = [
        s for s in sockets.get("client", {}).get("subflows", []) if s.get("state") == "ESTABLISHED"
    ]
    facts.add(
        SUBFLOWS_ESTABLISHED,
        len(subflows),
        "client subflows: " + "; ".join(f"{s['local']} > {s['remote']}" for s in subflows),
    )


def _counted(facts: _Facts, counters: Counters) -> None:
    facts.add(
        JOINS_ATTEMPTED, _count(counters, "client", "MPJoinSynTx"), _cite(counters, "MPJoinSynTx")
    )
    facts.add(
        JOINS_COMPLETED, _count(counters, "server", "MPJoinAckRx"), _cite(counters, "MPJoinAckRx")
    )
    for name, counter in COUNTED:
        total = sum(_count(counters, side, counter) for side in counters)
        facts.add(name, total, _cite(counters, counter))


def _resets(facts: _Facts, timelines: dict[str, Any]) -> None:
    resets = []
    for pcap in ("client.pcap", "server.pcap"):
        for sub in timelines.get(pcap, {}).get("subflows", []):
            for reset in sub.get("resets", []):
                where = f"{pcap} frame {reset['frame']} {sub['flow']}"
                resets.append((sub["kind"], reset.get("mp_tcprst"), where))
    join = [r for r in resets if r[0] == "join"]
    initial = [r for r in resets if r[0] in ("initial", "tcp", "mp_capable-attempt")]
    facts.add(
        JOIN_RESET_REASONS,
        sorted({r[1] or "none" for r in join}),
        "; ".join(r[2] for r in join) or "no RST on a join subflow",
    )
    facts.add(
        INITIAL_SUBFLOW_RESET,
        bool(initial),
        "; ".join(r[2] for r in initial) or "no RST on the initial subflow",
    )


def _transfer(facts: _Facts, transfer: dict[str, Any]) -> None:
    stalled = transfer["stalled"]
    facts.add(
        STALLED,
        stalled,
        f"no progress for {transfer.get('stall_after')} s"
        if stalled
        else f"transfer took {transfer['seconds']} s",
    )
    for stream in transfer["streams"]:
        if not stream["requested"]:
            continue
        complete = stream["received"] == stream["sent"] == stream["requested"]
        if stream["intact"]:
            state = "intact"
        elif complete or stream["received"] > stream["requested"]:
            state = "changed"
        else:
            state = "lost"
        evidence = (
            f"{stream['received']}/{stream['requested']} bytes, sha256 sent "
            f"{stream['sha256_sent'][:12]} received {stream['sha256_received'][:12]}"
        )
        facts.add(DATA_C2S if stream["direction"] == "c>s" else DATA_S2C, state, evidence)


def observe(doc: dict[str, Any], log: list[dict[str, Any]]) -> dict[str, Fact]:
    """Every fact the evidence supports, by name."""
    facts = _Facts()
    connect = doc.get("connect", {})
    facts.add(CONNECTED, bool(connect.get("ok")), f"connect: {connect.get('error') or 'ok'}")
    _middlebox(facts, doc, log)
    if not connect.get("ok"):
        return dict(facts)
    counters = doc.get("counters", {})
    _handshake(facts, counters)
    if doc.get("sockets"):
        _sockets(facts, doc["sockets"])
    _counted(facts, counters)
    _resets(facts, doc.get("timelines", {}))
    if doc.get("transfer"):
        _transfer(facts, doc["transfer"])
    _derived(facts)
    return dict(facts)


def _derived(facts: _Facts) -> None:
    """Facts computed from others, for expectations that allow alternatives."""
    data = [facts[n] for n in (DATA_C2S, DATA_S2C) if n in facts]
    if data:
        changed = any(f.value == "changed" for f in data)
        facts.add(CHANGED_SOMEWHERE, changed, "; ".join(f"{f.name}: {f.value}" for f in data))
    if FALLBACK_LATER in facts and INITIAL_SUBFLOW_RESET in facts:
        later, reset = facts[FALLBACK_LATER], facts[INITIAL_SUBFLOW_RESET]
        facts.add(
            BROKEN_OR_FALLBACK, later.value or reset.value, f"{later.evidence}; {reset.evidence}"
        )
