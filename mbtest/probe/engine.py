"""The TTL sweep: one probe segment sent with TTLs 1..N, answers matched back to their TTL.

``parallel`` sends every TTL at once, waits while answers keep coming (no longer than the
timeout, and no longer than a grace period after the last answer once round-trip times are
known), then re-sends only the TTLs that stayed silent below the destination. ``serial`` is
the one-TTL-at-a-time method of classic traceroute and tracebox (a timeout per try, several
tries per TTL), kept as the baseline the benchmark compares with.

Each TTL's packet carries its own TCP key (sequence number, or TSval inside a connection)
and, over IPv4, its own IP ID, so a quote still matches when a middlebox rewrote one. What
routers hash to balance flows (ECMP) stays the same for every TTL of a sweep: addresses,
ports and, over IPv6, the flow label (one per sweep, never per TTL), so that all the TTLs of
one probe flow take one path.
"""

from __future__ import annotations

import random
import struct
import time
from dataclasses import dataclass, field

from mbtest.errors import PacketError
from mbtest.host import signals
from mbtest.packet.headers import TcpSegment
from mbtest.packet.quote import IcmpError, View
from mbtest.probe import wire
from mbtest.probe.rawio import Arrival

MIN_GRACE = 0.05  # seconds of quiet after the last answer before a round ends
RTT_FACTOR = 3.0  # ... or this many times the slowest round trip seen, if longer
ALONE_TTLS = 3  # silent TTLs worth asking one at a time, at most, after keyless quotes


@dataclass
class HopAnswer:
    ttl: int
    router: str
    rtt: float
    icmp: IcmpError

    @property
    def quote(self) -> View:
        return View(self.icmp.quote)


@dataclass
class Reply:
    """A segment from the target on the probe's 4-tuple."""

    ttl: int | None  # the TTL whose packet it answers, when that can be told
    rtt: float | None
    segment: TcpSegment


@dataclass
class Sweep:
    segment: wire.Segment
    max_ttl: int
    rng: random.Random = field(default_factory=random.Random)
    sent: dict[int, tuple[float, int]] = field(default_factory=dict)  # ttl -> (time, tries)
    answers: dict[int, HopAnswer] = field(default_factory=dict)
    replies: list[Reply] = field(default_factory=list)
    unmatched: int = 0  # ICMP errors about this probe that could not be tied to a TTL
    malformed: list[str] = field(default_factory=list)  # target's packets that were unreadable
    last_arrival: float = 0.0
    packets_sent: int = 0
    rounds: int = 0
    slot: int = 0  # this sweep's share of the IP ID / flow label space, when sweeps run
    slots: int = 1  # side by side: shares never overlap, so no sweep claims another's quote
    hint: PathHint | None = None  # what the sweeps of one run learnt about the path
    alone: int | None = None  # the one TTL in flight: a keyless quote is its answer
    tied_alone: list[int] = field(default_factory=list)  # TTLs placed that way
    tied_by_router: list[int] = field(default_factory=list)  # placed by the run's routers
    unplaced: list[Arrival] = field(default_factory=list)  # keyless quotes not placed yet
    round_ttls: list[int] = field(default_factory=list)  # the TTLs this re-ask round sent
    flow_label: int | None = None  # IPv6: the flow's label (its handshake's), else a random one

    def __post_init__(self) -> None:
        share = (0xFFFF if self.segment.version == 4 else 0xFFFFF) // self.slots
        self.id_base = self.slot * share + self.rng.randrange(1, share - self.max_ttl)
        self.tsval_base = None
        if self.segment.ts_offset is not None:
            self.tsval_base = struct.unpack_from(
                "!I", self.segment.options, self.segment.ts_offset
            )[0]

    # --- packets -------------------------------------------------------------------------

    def packet(self, ttl: int) -> bytes:
        return wire.packet(self.segment, ttl, self.ip_ident(ttl), ttl)

    def ip_ident(self, ttl: int) -> int:
        """The IPv4 ID of the TTL's packet; over IPv6 the sweep's one flow label (routers
        hash it: a label per TTL would send the TTLs of one flow down different paths)."""
        if self.segment.version == 4:
            return self.id_base + ttl
        return self.id_base if self.flow_label is None else self.flow_label

    def send(self, io, ttl: int) -> None:
        at = io.send(self.packet(ttl), self.segment.dst)
        self.sent[ttl] = (at, self.sent.get(ttl, (0.0, 0))[1] + 1)
        self.packets_sent += 1

    # --- matching ------------------------------------------------------------------------

    def _in_range(self, offset: int | None) -> int | None:
        return offset if offset is not None and 1 <= offset <= self.max_ttl else None

    def match_quote(self, view: View) -> int | None:
        """The TTL of the packet a quote holds, or None when it is not one of this sweep's."""
        seg = self.segment
        if view.protocol != 6:
            return None
        fields = view.ip_fields()
        ours = fields.get("dst") == seg.dst
        if not ours and view.dport != seg.dport:
            return None  # (the source is not checked: a NAT may have rewritten both halves)
        candidates = self._key_offsets(view)  # the 32-bit keys first: random per sweep,
        # they tell sweeps apart
        if view.version == 4 and view.ip_id is not None and ours:  # (when a middlebox
            # rewrote them, or an 8-byte quote cut them off; only toward this target: runs
            # toward other targets, a campaign's, share no IP ID space)
            candidates.append(view.ip_id - self.id_base)
        return next((t for t in map(self._in_range, candidates) if t), None)

    def _keyless(self, view: View) -> bool:
        """A quote of this very flow (its addresses and ports: a run's ports are its own)
        that holds no per-TTL key it can be matched by: an 8-byte quote of an IPv6 packet
        inside a connection (its sequence number is the connection's, its flow label the
        sweep's, its TSval cut off), or of a SYN whose sequence number a middlebox shifted.
        Its router's TTL, or sending one TTL at a time, tells its TTL."""
        seg = self.segment
        return (
            view.protocol == 6
            and view.ip_fields().get("dst") == seg.dst
            and view.sport == seg.sport
            and view.dport == seg.dport
        )

    @property
    def keyless(self) -> int:
        """Quotes of this flow too short to hold a per-TTL key, not placed (yet)."""
        return len(self.unplaced)

    def place_keyless(self) -> None:
        """Keyless quotes placed at the TTL at which the sweeps of the run saw their router
        with a key (a router stands at one distance from here)."""
        left = []
        for arrival in self.unplaced:
            ttl = self._router_ttl(arrival.icmp.router)
            if ttl is not None and ttl in self.answers:
                continue  # (another copy of that TTL's answer: already placed)
            if ttl is None or ttl not in self.sent:
                left.append(arrival)
                continue
            rtt = max(0.0, arrival.time - self.sent[ttl][0])  # (from its last send: at most)
            self.answers[ttl] = HopAnswer(ttl, arrival.icmp.router, rtt, arrival.icmp)
            self.tied_by_router.append(ttl)
        self.unplaced = left

    def _router_ttl(self, router: str) -> int | None:
        """Where a router stands: the TTL this sweep or the run's others saw it answer."""
        own = [t for t, a in self.answers.items() if a.router == router]
        if own:
            return own[0]
        return self.hint.ttl_of(router) if self.hint is not None else None

    def match_key(self, view: View) -> int | None:
        """The TTL of a packet by its 32-bit key only (sequence number or TSval), never by
        the 16-bit IP ID: for records of a server that sees other flows than the probe's."""
        if view.protocol != 6 or view.dport != self.segment.dport:
            return None
        return next((t for t in map(self._in_range, self._key_offsets(view)) if t), None)

    def _key_offsets(self, view: View) -> list[int]:
        """The per-TTL offsets a packet's 32-bit keys (sequence number, TSval) carry."""
        seg, offsets = self.segment, []
        if seg.vary == "seq" and view.seq is not None:
            offsets.append((view.seq - seg.seq) & 0xFFFFFFFF)
        if self.tsval_base is not None and (tsval := view.tsval()) is not None:
            offsets.append((tsval - self.tsval_base) & 0xFFFFFFFF)
        return offsets

    def _challenge_ack(self, seg: TcpSegment) -> bool:
        """A pure ACK answering one of a SYN sweep's SYNs: the target already holds a
        request for this 4-tuple (an earlier TTL's SYN reached it), so its numbers name
        that SYN, not the one it answers: only a round with one TTL in flight places it."""
        return (
            self.segment.vary == "seq"
            and "S" in self.segment.flags
            and seg.is_ack
            and not seg.flags & 0x06  # (neither SYN nor RST)
            and self.rounds > 1
        )

    def match_reply(self, seg: TcpSegment) -> int | None:
        """The TTL a reply answers: by its ACK (stateless probes) or its TSecr echoing the
        TSval key, whichever a middlebox left intact."""
        candidates = []
        if self.segment.vary == "seq" and seg.is_ack:
            candidates.append((seg.ack - 1 - self.segment.seq) & 0xFFFFFFFF)
        if self.tsval_base is not None:
            for kind, value in seg.options():
                if kind == 8 and len(value) == 8:
                    tsecr = struct.unpack("!I", value[4:])[0]
                    candidates.append((tsecr - self.tsval_base) & 0xFFFFFFFF)
        return next((t for t in map(self._in_range, candidates) if t), None)

    def is_reply(self, seg: TcpSegment) -> bool:
        s = self.segment
        return seg.src == s.dst and seg.sport == s.dport and seg.dport == s.sport

    def feed(self, arrival: Arrival) -> None:
        if arrival.icmp is not None:
            view = View(arrival.icmp.quote)
            ttl = self.match_quote(view)
            if ttl is None and self._keyless(view):
                lone = self.alone is not None and self.alone not in self.answers
                known = self._router_ttl(arrival.icmp.router)  # (a late answer of a router
                if not lone or known not in (None, self.alone):  # known elsewhere: not it)
                    self.unplaced.append(arrival)
                    return
                ttl = self.alone
                self.tied_alone.append(ttl)
            elif ttl is not None and self.hint is not None:
                self.hint.seen(arrival.icmp.router, ttl)
            if ttl is None:
                if view.protocol == 6 and view.dport == self.segment.dport:
                    self.unmatched += 1
                return
            if ttl not in self.answers:
                rtt = arrival.time - self.sent.get(ttl, (arrival.time, 0))[0]
                self.answers[ttl] = HopAnswer(ttl, arrival.icmp.router, rtt, arrival.icmp)
                self.last_arrival = arrival.time
        elif arrival.malformed is not None:
            if arrival.source == self.segment.dst:
                self.malformed.append(arrival.malformed)
        elif arrival.tcp is not None and self.is_reply(arrival.tcp):
            try:
                arrival.tcp.options()  # a reply whose options cannot be read is noted, not used
            except PacketError as e:
                self.malformed.append(str(e))
                return
            ttl = self.match_reply(arrival.tcp)
            if (
                self._challenge_ack(arrival.tcp)
                and len(self.round_ttls) == 1
                and ttl is not None
                and ttl > self.round_ttls[0]
            ):  # (its numbers name the later SYN that opened the request)
                ttl = self.round_ttls[0]
            if ttl is not None and self.hint is not None:
                self.hint.learn(ttl)
            rtt = arrival.time - self.sent[ttl][0] if ttl in self.sent else None
            self.replies.append(Reply(ttl, rtt, arrival.tcp))
            self.last_arrival = arrival.time

    # --- state ---------------------------------------------------------------------------

    @property
    def end_ttl(self) -> int | None:
        """Where the path ends: the destination's distance, or a hop that said unreachable."""
        ends = [r.ttl for r in self.replies if r.ttl is not None]
        ends += [a.ttl for a in self.answers.values() if not a.icmp.expired]
        if ends:
            return min(ends)
        if self.replies:  # answered, but not in a way that names the TTL
            return max((t for t, a in self.answers.items() if a.icmp.expired), default=0) + 1
        return None

    @property
    def max_rtt(self) -> float:
        rtts = [a.rtt for a in self.answers.values()]
        rtts += [r.rtt for r in self.replies if r.rtt is not None]
        return max(rtts, default=0.0)

    def silent_below(self) -> list[int]:
        """TTLs still without an answer that are worth asking again: below the destination
        once it answered; up to its distance when another sweep of the run learnt it (the
        destination's own TTL included, its answer may have been lost); else up to one
        beyond the last router that answered (a lost last answer is asked again, a silent
        tail is not asked in full again and again)."""
        end = self.end_ttl
        if end is not None:
            upper = end - 1
        elif self.hint is not None and self.hint.distance is not None:
            upper = min(self.hint.distance, self.max_ttl)
        elif self.answers:
            upper = min(max(self.answers) + 1, self.max_ttl)
        else:
            upper = self.max_ttl
        return [t for t in range(1, upper + 1) if t not in self.answers]

    def complete(self) -> bool:
        return self.end_ttl is not None and not self.silent_below()

    def answered(self, ttl: int) -> bool:
        end = self.end_ttl
        return ttl in self.answers or (end is not None and end <= ttl)


@dataclass
class PathHint:
    """What the sweeps of one run learn about the path: the destination's distance, learnt
    by the first sweep that saw the target answer (sweeps that start later send no TTL
    beyond it: a SYN there only costs a RST), and the TTL of each router that answered."""

    distance: int | None = None
    routers: dict[str, set[int]] = field(default_factory=dict)  # router -> TTLs it answered

    def seen(self, router: str, ttl: int) -> None:
        self.routers.setdefault(router, set()).add(ttl)

    def ttl_of(self, router: str) -> int | None:
        """The one TTL at which the run's sweeps saw this router (None: not one)."""
        ttls = self.routers.get(router, set())
        return next(iter(ttls)) if len(ttls) == 1 else None

    def learn(self, ttl: int) -> None:
        """The target answered the packet sent with this TTL."""
        self.distance = ttl if self.distance is None else min(self.distance, ttl)

    def beyond(self, ttl: int) -> bool:
        return self.distance is not None and ttl > self.distance


# --- drivers -------------------------------------------------------------------------------


def _collect(io, sweep: Sweep, until: float) -> None:
    signals.check()
    for arrival in io.receive(until):
        sweep.feed(arrival)


def parallel(io, sweep: Sweep, timeout: float, tries: int, pace: float = 0.001) -> None:
    """All TTLs at once (stopping at the destination's distance as soon as any sweep of the
    run has seen the target answer), then the silent ones again, `tries` rounds at most."""
    to_send = list(range(1, sweep.max_ttl + 1))
    while to_send and sweep.rounds < tries:
        sweep.rounds += 1
        sweep.round_ttls = [t for t in to_send if sweep.hint is None or not sweep.hint.beyond(t)]
        for ttl in to_send:
            if sweep.hint is not None and sweep.hint.beyond(ttl):
                break  # the target already answered a smaller TTL: nothing to learn there
            sweep.send(io, ttl)
            for arrival in io.poll():
                sweep.feed(arrival)
            if pace:
                time.sleep(pace)
        last_send = time.monotonic()
        while not sweep.complete():
            end = last_send + timeout
            if sweep.answers or sweep.replies:
                grace = max(MIN_GRACE, RTT_FACTOR * sweep.max_rtt)
                end = min(end, max(last_send, sweep.last_arrival) + grace)
            if time.monotonic() >= end:
                break
            _collect(io, sweep, end)
        sweep.place_keyless()
        to_send = sweep.silent_below()
    if sweep.keyless:
        one_at_a_time(io, sweep, timeout, tries)


def one_at_a_time(io, sweep: Sweep, timeout: float, tries: int) -> None:
    """The TTLs still silent after keyless quotes came back, each sent alone (up to `tries`
    times, a timeout each, as the serial method does): a keyless quote that comes back
    then has only one TTL it can be about. The last round's stragglers are waited for
    first; then the phase has a deadline: what three silent TTLs would cost."""
    _collect_quiet(io, sweep, min(timeout, max(MIN_GRACE, RTT_FACTOR * sweep.max_rtt)))
    sweep.place_keyless()
    deadline = time.monotonic() + ALONE_TTLS * tries * timeout
    for ttl in sweep.silent_below():
        if sweep.hint is not None and sweep.hint.beyond(ttl):
            break
        _ask_alone(io, sweep, ttl, timeout, tries, deadline)
        end_ttl = sweep.end_ttl
        if time.monotonic() >= deadline or (end_ttl is not None and ttl >= end_ttl):
            break


def _collect_quiet(io, sweep: Sweep, quiet: float) -> None:
    """Read until ``quiet`` seconds pass without anything arriving."""
    end = time.monotonic() + quiet
    while time.monotonic() < end:
        signals.check()
        got = io.receive(end)
        for arrival in got:
            sweep.feed(arrival)
        if got:
            end = time.monotonic() + quiet


def _ask_alone(
    io, sweep: Sweep, ttl: int, timeout: float, tries: int, deadline: float = float("inf")
) -> None:
    """One TTL in flight, alone, until it is answered: up to ``tries`` sends, a timeout
    each (and none past ``deadline``); a keyless quote meanwhile can only be this TTL's."""
    for _ in range(tries):
        if sweep.answered(ttl) or time.monotonic() >= deadline:
            return
        sweep.rounds = max(sweep.rounds, sweep.sent.get(ttl, (0, 0))[1] + 1)
        sweep.alone = ttl
        try:
            sweep.send(io, ttl)
            end = min(deadline, time.monotonic() + timeout)
            while not sweep.answered(ttl) and time.monotonic() < end:
                _collect(io, sweep, end)
        finally:
            sweep.alone = None


def serial(io, sweep: Sweep, timeout: float, tries: int) -> None:
    """One TTL at a time: wait for its answer or the timeout, up to `tries` times each."""
    for ttl in range(1, sweep.max_ttl + 1):
        _ask_alone(io, sweep, ttl, timeout, tries)
        end_ttl = sweep.end_ttl
        if end_ttl is not None and end_ttl <= ttl:
            return
