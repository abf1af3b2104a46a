"""What ``mbtest serve`` saw, merged into a path probe's result.

ICMP quotes show changes in the forward direction only, up to the last router that
answers, and only as far as its quote reaches. A cooperating server closes both gaps: it
records every segment that reached it (after the whole path) and every segment it sent
(before the path back). Per field, a change is then placed "at hop k" (a quote shows it
first there), "between hop k and the server" (the last router that quoted the field did
not see it changed, the server did), or "on the way back" (the server sent it one way and
the probe received it another).

A record is tied to the probe's packet of one TTL by the same per-TTL keys that tie ICMP
quotes to their TTL (sequence number or TSval, IP ID), so a NAT or a sequence rewriter does
not hide it; the watch itself is keyed by a nonce the probe chose.
"""

from __future__ import annotations

import os
import struct
import threading
import time
from dataclasses import dataclass
from typing import Any

from mbtest.endpoints import control
from mbtest.errors import PacketError
from mbtest.mptcp.fields import short
from mbtest.packet.headers import TcpSegment, parse_tcp
from mbtest.packet.quote import View
from mbtest.probe import wire
from mbtest.probe.diff import diff
from mbtest.probe.engine import Sweep
from mbtest.probe.result import covers

WATCH_SECONDS = 60.0


class ServerLink:
    """The probe's control connection to ``mbtest serve``, shared by the probes of a run
    (one request at a time)."""

    def __init__(self, address: str, port: int, secret: bytes, timeout: float = 5.0):
        self.where = f"{address} port {port}"
        self.client = control.Client(address, port, secret, timeout)
        self.lock = threading.Lock()
        self.data_port = self.ask("hello")["port"]

    def check_port(self, port: int) -> None:
        """One sentence when the server watches another port than the one probed (its
        records would never hold the probe's packets)."""
        if self.data_port != port:
            raise control.ControlError(
                f"mbtest serve at {self.where} serves port {self.data_port}, "
                f"not the probed port {port} (give -p {self.data_port})"
            )

    def ask(self, op: str, **fields: Any) -> dict[str, Any]:
        with self.lock:
            return self.client.ask(op, **fields)

    def watch(self) -> str:
        nonce = os.urandom(16).hex()
        self.ask("watch", nonce=nonce, seconds=WATCH_SECONDS)
        return nonce

    def fetch(self, nonce: str) -> dict[str, Any]:
        return self.ask("fetch", nonce=nonce)

    def send_back(self, nonce: str, packet: bytes) -> None:
        self.ask("send", nonce=nonce, packet_hex=packet.hex())

    def close(self) -> None:
        self.client.close()


class BrokenLink:
    """A control channel found tampered with when the run began: every probe reports that,
    rather than a record, and the sweeps (whose ICMP evidence stands) still run."""

    def __init__(self, error: control.ControlError):
        self.error = error

    def check_port(self, port: int) -> None:
        pass

    def watch(self) -> str:
        raise self.error

    def fetch(self, nonce: str) -> dict[str, Any]:
        raise self.error

    def send_back(self, nonce: str, packet: bytes) -> None:
        raise self.error

    def close(self) -> None:
        pass


def connect(address: str, port: int, secret: bytes) -> ServerLink | BrokenLink:
    """The link to mbtest serve; one sentence (ControlError) when it cannot be reached."""
    try:
        return ServerLink(address, port, secret)
    except control.Tampered as e:
        return BrokenLink(e)


@dataclass
class Served:
    """The fetched records, read once: the probe's packets as they arrived (with the TTL
    each was sent with) and what the server sent; what could not be read, counted."""

    arrived: list[tuple[int, bytes]]  # (ttl, packet as it arrived)
    sent_back: list[bytes]
    records: int
    malformed: int
    lost: dict[str, int]  # what the server could not keep: "dropped", "kernel_dropped"

    @classmethod
    def read(cls, sweep: Sweep, fetched: Any) -> Served:
        arrived, sent_back, malformed = [], [], 0
        for raw, direction in _records(fetched):
            if raw is None:
                malformed += 1
            elif direction == "in":
                ttl = sweep.match_key(View(raw))
                if ttl is not None:
                    arrived.append((ttl, raw))
            elif direction == "out":
                sent_back.append(raw)
        lost = {  # (said: a lost record is not a lost packet)
            k: fetched[k]
            for k in ("dropped", "kernel_dropped")
            if isinstance(fetched, dict) and isinstance(fetched.get(k), int) and fetched[k]
        }
        return cls(arrived, sent_back, len(_list(fetched)), malformed, lost)

    def first(self) -> tuple[int, bytes] | None:
        """The probe's packet with the fewest hops that still arrived."""
        return min(self.arrived) if self.arrived else None

    def answers_to(self, arrived: bytes) -> list[TcpSegment]:
        """What the server sent on the flow of a packet that arrived, in order."""
        mine = parse_tcp(arrived)
        answers = []
        for raw in self.sent_back:
            try:
                seg = parse_tcp(raw)
            except PacketError:
                continue
            if seg is not None and mine is not None and _reverse(seg, mine):
                answers.append(seg)
        return answers


def server_view(sweep: Sweep, served: Served, hops: list[dict[str, Any]]) -> dict:
    """The ``server`` part of a probe's result: what arrived, what changed where, and what
    the server answered against what came back."""
    doc: dict[str, Any] = {"arrived": bool(served.arrived), "records": served.records}
    doc.update(served.lost)
    if served.malformed:
        doc["malformed_records"] = served.malformed
    first = served.first()
    if first is None:
        doc["text"] = "none of this probe's packets reached the server"
        return doc
    ttl, raw = first
    doc["ttl"] = ttl
    forward = [c.as_dict() for c in diff(View(sweep.packet(ttl)), View(raw))]
    for change in forward:
        change["where"] = _where(change, sweep, hops)
    doc["forward"] = forward
    doc["back"] = _back(sweep, served.answers_to(raw))
    return doc


def _list(fetched: Any) -> list:
    records = fetched.get("records") if isinstance(fetched, dict) else None
    return records if isinstance(records, list) else []


def _records(fetched: Any):
    """(packet bytes or None when unreadable, direction) of every fetched record."""
    for record in _list(fetched):
        raw = None
        if isinstance(record, dict) and isinstance(record.get("packet_hex"), str):
            try:
                raw = bytes.fromhex(record["packet_hex"])
                View(raw)
            except (ValueError, PacketError):
                raw = None
        yield raw, record.get("direction") if isinstance(record, dict) else None


def _where(change: dict[str, Any], sweep: Sweep, hops: list[dict[str, Any]]) -> str:
    """Where on the path a change the server saw happened, from the routers' quotes."""
    key = (change["field"], change["text"])
    for hop in hops:
        if any((c["field"], c["text"]) == key for c in hop["changes"]):
            return f"at hop {hop['ttl']} (first quoted there)"
    covering = [
        ttl for ttl, answer in sorted(sweep.answers.items())
        if answer.icmp.expired and covers(answer.quote, change["field"])
    ]  # fmt: skip
    if covering:
        return f"between hop {covering[-1]} (the last router that quoted it) and the server"
    return "between the probe and the server (no router quoted this field)"


def _back(sweep: Sweep, answers: list[TcpSegment]) -> dict[str, Any]:
    """The server's first answer to the probe's flow (as the server saw that flow) against
    the first answer the probe received."""
    if not answers:
        return {"text": "the server's answer was not seen (it sent nothing on this flow)"}
    if not sweep.replies:
        return {"text": "the server answered, but nothing came back to the probe", "lost": True}
    got = sweep.replies[0].segment
    # paired by kind (a SYN/ACK with a SYN/ACK...), in order: the server's first of that kind
    alike = [a for a in answers if (a.syn, a.rst) == (got.syn, got.rst)]
    if not alike:
        return {"text": f"the server sent no {got.flag_string} like the one the probe received"}
    sent = alike[0]
    # (an IPv6 raw socket gives no IP header: the answer's destination is the probe's source)
    here = sweep.segment.src
    changes = [c.as_dict() for c in diff(View(_rebuilt(sent)), View(_rebuilt(got, here)))]
    return {"server_sent": sent.flag_string, "changes": changes}


def _reverse(seg: TcpSegment, mine: TcpSegment) -> bool:
    return (seg.src, seg.sport, seg.dst, seg.dport) == (mine.dst, mine.dport, mine.src, mine.sport)


def _rebuilt(seg: TcpSegment, dst: str | None = None) -> bytes:
    """A received segment as a packet again (TCP header, options and payload as they were;
    IP fields that the path always changes, TTL and IP ID, set alike on both sides)."""
    segment = wire.Segment(
        seg.src, seg.dst or dst or seg.src, seg.sport, seg.dport, seg.seq, seg.ack,
        seg.flag_string, seg.window, seg.options_raw, seg.payload,
    )  # fmt: skip
    # IPv4's identification is compared (a normaliser may rewrite it); an IPv6 raw socket
    # gives no header, so the flow label of what came back is unknown: left out
    return wire.packet(segment, 64, seg.ip_id if seg.ip_version == 4 else 0, 0)


def crafted_back(
    server: ServerLink, nonce: str, sweep: Sweep, served: Served, io, timeout: float
) -> dict[str, Any] | None:
    """The probe's own MPTCP options sent back by the server, server to client, inside the
    probe's connection, and what of them arrived: what the path does to them the other way,
    which ICMP can never show. Only for probes inside a connection (a SYN probe's answer is
    the kernel's own SYN/ACK, compared in ``back``). None when there is nothing to send."""
    probe_seg = sweep.segment
    if "S" in probe_seg.flags or probe_seg.ts_offset is None:
        return None
    first = served.first()
    answers = served.answers_to(first[1]) if first is not None else []
    arrived = parse_tcp(first[1]) if first is not None else None
    if arrived is None or not answers:
        return None
    answer = answers[0]
    marker = int.from_bytes(os.urandom(4), "big")  # the TSval that tells it from other ACKs
    options = bytearray(probe_seg.options)
    options[probe_seg.ts_offset : probe_seg.ts_offset + 4] = marker.to_bytes(4, "big")
    segment = wire.Segment(
        arrived.dst, arrived.src, arrived.dport, arrived.sport, answer.seq, answer.ack, "A",
        answer.window or 512, bytes(options),
    )  # fmt: skip
    packet = wire.packet(segment, 64, 0, 0)
    server.send_back(nonce, packet)
    got = _await_marked(io, sweep, marker, timeout)
    doc: dict[str, Any] = {"sent": _describe(packet)}
    if got is None:
        doc.update(arrived=False, text="the crafted segment did not come back")
        return doc
    here = sweep.segment.src
    changes = [
        c.as_dict() for c in diff(View(_rebuilt(parse_tcp(packet))), View(_rebuilt(got, here)))
    ]
    doc.update(arrived=True, changes=changes)
    return doc


def _await_marked(io, sweep: Sweep, marker: int, timeout: float) -> TcpSegment | None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        for arrival in io.receive(end):
            seg = arrival.tcp
            if seg is None or not sweep.is_reply(seg):
                continue
            try:
                stamps = [v for k, v in seg.options() if k == 8 and len(v) == 8]
            except PacketError:
                continue
            if stamps and struct.unpack("!I", stamps[0][:4])[0] == marker:
                return seg
    return None


def _describe(packet: bytes) -> str:
    seg = parse_tcp(packet)
    if seg is None:
        return "?"
    try:
        names = [short(o) for o in seg.mptcp_options() if not isinstance(o, Exception)]
    except PacketError:
        names = []
    return f"{seg.flag_string} [{', '.join(names)}]"
