"""The observed outcome: facts derived from a run's evidence, each citing that evidence.

Pure: a function of the run document (counters, socket info, transfer, timelines,
middlebox state) and the middlebox's ground-truth log. No fact is assumed: one that the
evidence cannot establish is absent, and the verdict then says "inconclusive".
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

FALLBACK_HANDSHAKE = ("MPCapableFallbackSYNACK", "MPCapableFallbackACK")
FALLBACK_LATER = (
    "InfiniteMapTx",
    "InfiniteMapRx",
    "DssFallback",
    "DSSCorruptionFallback",
    "MPCapableDataFallback",
)


@dataclass(frozen=True)
class Fact:
    name: str
    value: Any
    evidence: str

    def to_json(self) -> dict[str, Any]:
        return asdict(self)


def _count(counters: dict[str, dict[str, int]], side: str, *names: str) -> int:
    return sum(counters.get(side, {}).get(n, 0) for n in names)


def _cite(counters: dict[str, dict[str, int]], *names: str) -> str:
    parts = [
        f"{side}.{n}+{v}"
        for side, deltas in counters.items()
        for n, v in deltas.items()
        if n in names
    ]
    return ", ".join(parts) or f"no change in {', '.join(names)}"


def observe(doc: dict[str, Any], log: list[dict[str, Any]]) -> dict[str, Fact]:
    """Every fact the evidence supports, by name."""
    facts: dict[str, Fact] = {}

    def add(name: str, value: Any, evidence: str) -> None:
        facts[name] = Fact(name, value, evidence)

    counters = doc.get("counters", {})
    connect = doc.get("connect", {})
    add("connected", bool(connect.get("ok")), f"connect: {connect.get('error') or 'ok'}")
    for mb in doc.get("middleboxes", {}).values():
        if mb.get("crashed"):
            add("middlebox_crashed", True, mb["crashed"])
    if doc.get("middleboxes"):
        from mbtest.middlebox import catalog

        passive = all(
            catalog.get(mb["behaviour"].split(":")[0]).PASSIVE for mb in doc["middleboxes"].values()
        )
        packets = sum(mb.get("packets", 0) for mb in doc["middleboxes"].values())
        triggered = bool(log) or (passive and packets > 0)
        add(
            "middlebox_triggered",
            triggered,
            f"{len(log)} changes in the middlebox log, {packets} packets seen",
        )
    if not connect.get("ok"):
        return facts

    mptcp_syn = _count(counters, "client", "MPCapableSYNACKRX") > 0
    add(
        "mptcp_negotiated",
        mptcp_syn,
        _cite(counters, "MPCapableSYNTX", "MPCapableSYNACKRX", "MPCapableACKRX"),
    )
    fell_back = _count(counters, "client", *FALLBACK_HANDSHAKE) + _count(
        counters, "server", *FALLBACK_HANDSHAKE
    )
    add(
        "fallback_at_handshake",
        fell_back > 0 or not mptcp_syn,
        _cite(counters, *FALLBACK_HANDSHAKE, "MPCapableSYNACKRX"),
    )
    later = sum(_count(counters, side, *FALLBACK_LATER) for side in ("client", "server"))
    add("fallback_later", later > 0, _cite(counters, *FALLBACK_LATER))
    sockets = doc.get("sockets")
    if sockets:
        mptcp_ends = {side: report.get("mptcp") for side, report in sockets.items()}
        add(
            "mptcp_at_end",
            mptcp_ends,
            "MPTCP_INFO "
            + ", ".join(
                f"{side}: {'ok' if ok else 'EOPNOTSUPP (fell back)'}"
                for side, ok in mptcp_ends.items()
            ),
        )
        subflows = [
            s
            for s in sockets.get("client", {}).get("subflows", [])
            if s.get("state") == "ESTABLISHED"
        ]
        add(
            "subflows_established",
            len(subflows),
            "client subflows: " + "; ".join(f"{s['local']} > {s['remote']}" for s in subflows),
        )
    add(
        "joins_attempted", _count(counters, "client", "MPJoinSynTx"), _cite(counters, "MPJoinSynTx")
    )
    add(
        "joins_completed", _count(counters, "server", "MPJoinAckRx"), _cite(counters, "MPJoinAckRx")
    )
    for name, counter in (
        ("mp_fail_sent", "MPFailTx"),
        ("mp_fail_received", "MPFailRx"),
        ("checksum_errors", "DataCsumErr"),
        ("fastclose", "MPFastcloseTx"),
        ("add_addr_sent", "AddAddrTx"),
        ("add_addr_received", "AddAddr"),
        ("add_addr_echoed", "EchoAddTx"),
        ("add_addr_dropped", "AddAddrDrop"),
        ("join_no_token", "MPJoinNoTokenFound"),
    ):
        total = sum(_count(counters, side, counter) for side in counters)
        add(name, total, _cite(counters, counter))
    resets = []
    timelines = doc.get("timelines", {})
    for pcap in ("client.pcap", "server.pcap"):
        for sub in timelines.get(pcap, {}).get("subflows", []):
            for reset in sub.get("resets", []):
                resets.append(
                    (
                        sub["kind"],
                        reset.get("mp_tcprst"),
                        f"{pcap} frame {reset['frame']} {sub['flow']}",
                    )
                )
    join_resets = [r for r in resets if r[0] == "join"]
    initial_resets = [r for r in resets if r[0] in ("initial", "tcp", "mp_capable-attempt")]
    add(
        "join_reset_reasons",
        sorted({r[1] or "none" for r in join_resets}),
        "; ".join(r[2] for r in join_resets) or "no RST on a join subflow",
    )
    add(
        "initial_subflow_reset",
        bool(initial_resets),
        "; ".join(r[2] for r in initial_resets) or "no RST on the initial subflow",
    )
    transfer = doc.get("transfer")
    if transfer:
        add(
            "stalled",
            transfer["stalled"],
            f"no progress for {transfer.get('stall_after')} s"
            if transfer["stalled"]
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
            add(f"data_{'c2s' if stream['direction'] == 'c>s' else 's2c'}", state, evidence)
    return facts
