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
from mbtest.mptcp.options import AddAddr, MpJoinSyn
from mbtest.verdict import packets, stall
from mbtest.verdict.evidence import Evidence

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
LOST_SOMEWHERE = _fact("lost_somewhere", "data did not all arrive in at least one direction")
CHANGED_BYTES = _fact(
    "changed_bytes",
    "per direction: bytes the application received that differ from what was "
    "sent at that offset, and where (stream offsets, the preamble byte first)",
)
MAPPING_CROSSED = _fact(
    "mapping_crossed",
    "data segments whose bytes run past the mapping they carry, as the "
    "receivers got them (a coalescer merging across a mapping boundary)",
)
OPTION_REMOVED_FROM = _fact(
    "option_removed_from",
    "the packets a middlebox removed MPTCP options from: SYN, first "
    "packet after the handshake, pure ACK, data",
)
INFINITE_MAPPING_SENT = _fact("infinite_mapping_sent", "infinite mappings sent (both ends)")
INFINITE_MAPPING_RECEIVED = _fact(
    "infinite_mapping_received", "infinite mappings received (both ends)"
)
REFUSED_LOCALLY = _fact(
    "refused_locally",
    "packets the endpoints built larger than their path MTU, refused before "
    "they left (IPv4 and IPv6 fragmentation failures with don't-fragment)",
)
STALL = _fact(
    "stall",
    "why the transfer stalled: what the stalled side keeps sending, whether it leaves "
    "the host, reaches the other side, is acknowledged or dropped by a middlebox",
)
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
# every MPTcpExt counter the facts read
_READ = (
    *FALLBACK_HANDSHAKE_COUNTERS, *FALLBACK_LATER_COUNTERS, *(c for _, c in COUNTED),
    "MPJoinSynTx", "MPJoinAckRx", "MPCapableSYNTX", "MPCapableSYNACKRX", "MPCapableACKRX",
)  # fmt: skip


@dataclass(frozen=True)
class Fact:
    name: str
    value: Any
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


Counters = dict[str, dict[str, int]]

# Counters older kernels do not have (Linux 6.1 has no MPJoinSynTx, AddAddrTx, EchoAddTx),
# counted instead in the endpoint's own capture: the packets it sent (the client opens
# every subflow, so what it sends goes c>s and what the server sends s>c) with that option.
FROM_PACKETS = {
    "MPJoinSynTx": lambda o: isinstance(o, MpJoinSyn),
    "AddAddrTx": lambda o: isinstance(o, AddAddr) and not o.echo,
    "EchoAddTx": lambda o: isinstance(o, AddAddr) and o.echo,
}
SENDS = {"client": "c>s", "server": "s>c"}


class Counted(dict):
    """The counters' deltas per side; ``from_packets`` names (side, counter) pairs counted
    in a capture because that side's kernel has no such counter; ``uncounted`` those the
    side's kernel lacks and no capture could stand in for."""

    def __init__(self, deltas: Counters, known: dict[str, list[str]] | None, evidence):
        super().__init__({side: dict(values) for side, values in deltas.items()})
        self.from_packets: set[tuple[str, str]] = set()
        self.uncounted: set[tuple[str, str]] = set()
        if not isinstance(known, dict):  # (a run recorded before kernels were told apart)
            return
        for side, names in known.items():
            if not isinstance(names, list) or not names:
                continue
            missing = set(_READ) - set(names)
            records = evidence.records(f"{side}.pcap") if missing else None
            for name in missing:
                test = FROM_PACKETS.get(name)
                if test is None or records is None or side not in SENDS:
                    self.uncounted.add((side, name))
                    continue
                sent = sum(
                    1
                    for r in records
                    if r.direction == SENDS[side] and any(test(o) for o in r.options)
                )
                self.setdefault(side, {})
                if sent:
                    self[side][name] = sent
                self.from_packets.add((side, name))


def _count(counters: Counters, side: str, *names: str) -> int:
    return sum(counters.get(side, {}).get(n, 0) for n in names)


def _cite(counters: Counters, *names: str) -> str:
    derived = getattr(counters, "from_packets", set())
    blind = getattr(counters, "uncounted", set())
    parts = [
        f"{side}.{n}+{v}" + (" (counted in its capture)" if (side, n) in derived else "")
        for side, deltas in counters.items()
        for n, v in deltas.items()
        if n in names
    ]
    said = ", ".join(parts) or f"no change in {', '.join(names)}"
    none = sorted(f"{s}.{n}" for s, n in derived if n in names and not counters[s].get(n))
    if none:
        said += f" ({', '.join(none)}: no such counter on that kernel, none in its capture)"
    unseen = sorted(f"{side}.{n}" for side, n in blind if n in names)
    if unseen:
        said += f" ({', '.join(unseen)}: not counted by that kernel)"
    return said


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


def _handshake(facts: _Facts, counters: Counters, sockets: dict[str, Any]) -> None:
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
    why = _cite(counters, *FALLBACK_LATER_COUNTERS)
    blind = {side for side, n in getattr(counters, "uncounted", ()) if n in FALLBACK_LATER_COUNTERS}
    ended = {side: (sockets.get(side) or {}).get("mptcp") for side in sorted(blind)}
    fell = [side for side, mptcp in ended.items() if mptcp is False]
    if mptcp_syn and fell and not later:  # (what that kernel does not count, its socket says)
        later = len(fell)
        why += f"; MPTCP_INFO of the {' and '.join(fell)}: fell back to TCP after the handshake"
    facts.add(FALLBACK_LATER, later > 0, why)


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


def _transfer(facts: _Facts, transfer: dict[str, Any], preamble: dict[str, Any]) -> None:
    stalled = transfer["stalled"]
    why = transfer.get("stall_basis") or f"no progress for {transfer.get('stall_after')} s"
    facts.add(STALLED, stalled, why if stalled else f"transfer took {transfer['seconds']} s")
    changes = {}
    for stream in transfer["streams"]:
        first = preamble.get(stream["direction"], {"sent": 0, "received": 0, "intact": True})
        if not stream["requested"] and not first["sent"]:
            continue
        sent = stream["sent"] + first["sent"]
        requested = stream["requested"] + first["sent"]
        received = stream["received"] + first["received"]
        intact = stream["intact"] and first["intact"]
        changed = stream.get("changed_bytes", 0) + (0 if first["intact"] else first["received"])
        delivered = received == sent == requested or stream["received"] > stream["requested"]
        if intact:
            state = "intact"
        elif delivered or stream.get("drained"):
            state = "changed"
        else:
            state = "lost"
        evidence = (
            f"{received}/{requested} bytes (the preamble's {first['sent']} included), sha256 "
            f"sent {stream['sha256_sent'][:12]} received {stream['sha256_received'][:12]}"
        )
        if stream.get("drained"):
            evidence += (
                f"; the network acknowledged all {sent} bytes sent: "
                f"{sent - received} fewer arrived (shortened on the way)"
            )
        facts.add(DATA_C2S if stream["direction"] == "c>s" else DATA_S2C, state, evidence)
        offset = first["sent"]
        ranges = [[a + offset, b + offset] for a, b in stream.get("changed_ranges", [])]
        changes[stream["direction"]] = {"bytes": changed, "ranges": ranges}
    if changes:
        said = "; ".join(
            f"{d}: {c['bytes']} bytes at {c['ranges'][:4]}" for d, c in changes.items()
        )
        facts.add(CHANGED_BYTES, changes, said)


def observe(evidence: Evidence) -> dict[str, Fact]:
    """Every fact the evidence supports, by name."""
    doc, log = evidence.doc, evidence.log
    facts = _Facts()
    connect = doc.get("connect", {})
    facts.add(CONNECTED, bool(connect.get("ok")), f"connect: {connect.get('error') or 'ok'}")
    _middlebox(facts, doc, log)
    if not connect.get("ok"):
        return dict(facts)
    counters = Counted(doc.get("counters", {}), doc.get("counters_known"), evidence)
    _handshake(facts, counters, doc.get("sockets") or {})
    if doc.get("sockets"):
        _sockets(facts, doc["sockets"])
    _counted(facts, counters)
    _resets(facts, doc.get("timelines", {}))
    if doc.get("transfer"):
        _transfer(facts, doc["transfer"], doc.get("preamble", {}))
        diagnosis = stall.diagnose(evidence)
        if diagnosis is not None:
            facts.add(STALL, diagnosis["text"], f"{doc['transfer'].get('stall_basis')}")
    _refused(facts, doc.get("host_counters"))
    _infinite(facts, counters, evidence)
    _packets(facts, evidence)
    _derived(facts)
    return dict(facts)


def _refused(facts: _Facts, host: dict[str, dict[str, int]] | None) -> None:
    if host is None:  # a run recorded before host counters were kept
        return
    names = ("Ip.FragFails", "Ip6.FragFails")
    total = sum(host.get(side, {}).get(n, 0) for side in host for n in names)
    facts.add(REFUSED_LOCALLY, total, _cite(host, *names))


def _infinite(facts: _Facts, counters: Counters, evidence: Evidence) -> None:
    sent = sum(_count(counters, side, "InfiniteMapTx") for side in counters)
    received = sum(_count(counters, side, "InfiniteMapRx") for side in counters)
    frames = []
    for side in ("client", "server"):
        records = evidence.records(f"{side}.pcap")
        if records:
            for direction, found in packets.infinite_mappings(records).items():
                if found:
                    frames.append(f"{side}.pcap {direction} frames {found[:3]}")
    where = "; ".join(frames)
    facts.add(
        INFINITE_MAPPING_SENT,
        sent,
        _cite(counters, "InfiniteMapTx") + (f"; {where}" if where else ""),
    )
    facts.add(INFINITE_MAPPING_RECEIVED, received, _cite(counters, "InfiniteMapRx"))


def _packets(facts: _Facts, evidence: Evidence) -> None:
    removed = packets.removals(evidence.log)
    if evidence.doc.get("middleboxes"):
        kinds = sorted({packets.packet_kind(e) for e in removed})
        where = "; ".join(
            f"{e.get('direction')} packet {e.get('packet')} seq {e.get('seq')}: "
            f"{packets.packet_kind(e)}"
            for e in removed[:3]
        )
        facts.add(OPTION_REMOVED_FROM, kinds, where or "no option removed in the log")
    crossed, cited, looked = 0, [], False
    for side, direction in (("server", "c>s"), ("client", "s>c")):
        records = evidence.records(f"{side}.pcap")
        if records is None:
            continue
        looked = True
        found = packets.crossings(records, direction)
        crossed += len(found)
        cited += [c.text(f"{side}.pcap") for c in found[:2]]
    if looked:
        facts.add(
            MAPPING_CROSSED,
            crossed,
            "; ".join(cited) or "every data segment stayed inside the mapping it carries",
        )


def _derived(facts: _Facts) -> None:
    """Facts computed from others, for expectations that allow alternatives."""
    data = [facts[n] for n in (DATA_C2S, DATA_S2C) if n in facts]
    if data:
        changed = any(f.value == "changed" for f in data)
        said = "; ".join(f"{f.name}: {f.value}" for f in data)
        facts.add(CHANGED_SOMEWHERE, changed, said)
        facts.add(LOST_SOMEWHERE, any(f.value == "lost" for f in data), said)
    if FALLBACK_LATER in facts and INITIAL_SUBFLOW_RESET in facts:
        later, reset = facts[FALLBACK_LATER], facts[INITIAL_SUBFLOW_RESET]
        facts.add(
            BROKEN_OR_FALLBACK, later.value or reset.value, f"{later.evidence}; {reset.evidence}"
        )
