"""The probe's pure core without root: packets, ICMP quotes, field-level diffs checked against
the middlebox behaviours' own logs, TTL matching, and the sweep logic on a simulated path."""

import ipaddress
import random
import re
import struct

import pytest

from mbtest.errors import MbtestError
from mbtest.middlebox.flows import FlowTracker
from mbtest.middlebox.spec import MiddleboxSpec
from mbtest.mptcp import crypto
from mbtest.mptcp.options import AddAddr, Dss, MpCapable, MpJoinSyn
from mbtest.packet.edit import TcpPacket
from mbtest.packet.headers import parse_tcp
from mbtest.packet.quote import View, parse_icmp
from mbtest.probe import engine, wire
from mbtest.probe.diff import diff
from mbtest.probe.rawio import Arrival
from mbtest.probe.result import probe_result

SRC, DST = "10.0.0.1", "10.0.9.2"
SRC6, DST6 = "fd00::1", "fd00:9::2"
USUAL = [wire.mss(1460), wire.sack_permitted_timestamps(1000), wire.window_scale(7)]


def syn(*mptcp, v6=False):
    src, dst = (SRC6, DST6) if v6 else (SRC, DST)
    options = wire.options_bytes([*USUAL, *mptcp])
    return wire.Segment(src, dst, 40000, 80, 1_000_000, 0, "S", options=options)


def data_segment(v6=False):
    payload = b"mbtest DSS probe payload\n"
    dss = Dss(
        data_ack=5,
        data_ack_8_bytes=False,
        dsn=1001,
        subflow_seq=1,
        data_length=len(payload),
        checksum=crypto.dss_checksum(1001, 1, len(payload), payload),
    )
    src, dst = (SRC6, DST6) if v6 else (SRC, DST)
    seg = wire.Segment(src, dst, 40000, 80, 5001, 7001, "PA", payload=payload, vary="tsval")
    return seg.with_options(wire.options_bytes([wire.timestamps(500, 600), dss]))


def icmp_v4(router_quote: bytes, kind=11, code=0, length_words=0, extension=b""):
    return bytes([kind, code, 0, 0, 0, length_words, 0, 0]) + router_quote + extension


# --- packets --------------------------------------------------------------------------------


@pytest.mark.parametrize("v6", [False, True])
def test_each_ttl_gets_its_own_id_and_key_and_valid_checksums(v6):
    seg = syn(MpCapable(version=1), v6=v6)
    a, b = TcpPacket(wire.packet(seg, 3, 100 + 3, 3)), TcpPacket(wire.packet(seg, 4, 100 + 4, 4))
    assert a.checksums_valid() and b.checksums_valid()
    assert View(bytes(a.buf)).ip_id == 103 and View(bytes(b.buf)).ip_id == 104
    assert (a.seq, b.seq) == (seg.seq + 3, seg.seq + 4)
    hop_limit = a.buf[7] if v6 else a.buf[8]
    assert hop_limit == 3
    inside = data_segment(v6)
    c = TcpPacket(wire.packet(inside, 5, 1, 5))
    assert c.seq == inside.seq and View(bytes(c.buf)).tsval() == 505


def test_options_that_do_not_fit_are_refused():
    with pytest.raises(MbtestError, match="more than 40"):
        wire.options_bytes(
            [*USUAL, AddAddr(address=ipaddress.ip_address("fd00::1"), port=1, hmac=1)]
        )


# --- quotes ---------------------------------------------------------------------------------


def test_icmp_quotes_honour_rfc4884_lengths_and_are_classified():
    packet = wire.packet(syn(MpCapable(version=1)), 1, 7, 1)
    padded = packet + bytes(-len(packet) % 4)
    error = parse_icmp(
        icmp_v4(padded, length_words=len(padded) // 4, extension=b"\x20" * 8), "10.0.1.1", 4
    )
    assert error.expired and error.extensions and error.quote == padded
    assert View(error.quote).quote_class() == "full"
    assert View(packet[:20]).quote_class() == "IP header only"
    assert View(packet[:28]).quote_class() == "8 bytes"
    assert View(packet[:40]).quote_class() == "partial"
    assert View(b"").quote_class() == "none"
    unreachable = parse_icmp(icmp_v4(packet, kind=3, code=13), "10.0.1.1", 4)
    assert (
        not unreachable.expired and unreachable.what == "unreachable: administratively prohibited"
    )
    assert parse_icmp(bytes([8, 0, 0, 0, 0, 0, 0, 0]), "10.0.1.1", 4) is None  # an echo request
    v6 = parse_icmp(
        bytes([3, 0, 0, 0, 0, 0, 0, 0]) + wire.packet(syn(v6=True), 1, 1, 1), "fd00::9", 6
    )
    assert v6.expired and View(v6.quote).quote_class() == "full"


def test_a_short_quote_reports_nothing_it_cannot_see():
    sent = wire.packet(syn(MpCapable(version=1)), 1, 7, 1)
    stripped = TcpPacket(sent)
    stripped.options = bytes(stripped.options).replace(MpCapable(version=1).encode(), b"\x01" * 4)
    assert diff(View(sent), View(stripped.to_bytes()[:28])) == []


# --- diffs, checked against what the behaviours log ------------------------------------------


def through(spec, packets):
    """Run packets through a catalog behaviour: (output packets, logged fields)."""
    behaviour, tracker = MiddleboxSpec.parse(spec).build(), FlowTracker()
    out, fields = [], set()
    for data in packets:
        pkt = TcpPacket(data)
        verdict = behaviour.handle(pkt, tracker.observe(pkt))
        out.append(verdict.packet if verdict.action == "modified" else data)
        fields |= {re.sub(r" \(.*\)$|\[.*\]$", "", c["field"]) for c in verdict.changes}
    return out, fields


def handshake_then(seg, v6=False):
    """A tracked flow's handshake before the probe segment, so segment filters apply."""
    src, dst = (SRC6, DST6) if v6 else (SRC, DST)
    first = wire.Segment(
        src, dst, 40000, 80, seg.seq - 1, 0, "S", options=wire.options_bytes([MpCapable(version=1)])
    )
    answer = wire.Segment(
        dst,
        src,
        80,
        40000,
        seg.ack - 1,
        seg.seq,
        "SA",
        options=wire.options_bytes([MpCapable(version=1, sender_key=9)]),
    )
    return [wire.packet(first, 64, 1, 0), wire.packet(answer, 64, 1, 0)]


CASES = [
    ("strip-option:mode=nop", syn(MpCapable(version=1)), "MP_CAPABLE removed: replaced by 4 NOPs"),
    ("strip-option:mode=remove", syn(MpCapable(version=1)),
     "MP_CAPABLE removed, the TCP header shrank by 4 bytes"),
    ("strip-option:mode=eol", syn(MpCapable(version=1)), "MP_CAPABLE removed: cut off by an EOL"),
    ("mangle-option:field=MP_CAPABLE.checksum_required,value=true", syn(MpCapable(version=1)),
     "MP_CAPABLE flag A 0 -> 1"),
    ("mangle-option:field=MP_JOIN.token,value=7", syn(MpJoinSyn(token=5, nonce=1)),
     "MP_JOIN token changed: 5 -> 7"),
    ("seq-rewrite:delta=12345", syn(MpCapable(version=1)), "TCP seq +12345"),
    ("ipid-rewrite", syn(MpCapable(version=1)), "IP ID"),
    ("window-shrink", data_segment(), "TCP window 64240 -> 32120"),
    ("mangle-option:field=DSS.dsn,value=7", data_segment(), "DSS data sequence number 1001 -> 7"),
    ("payload-flip", data_segment(), "payload changed: 1 of 25 bytes, first at byte 0"),
    ("payload-rewrite:find=DSS,replace=Data Sequence Signal", data_segment(),
     "payload 25 -> 42 bytes (17 added)"),
]  # fmt: skip


@pytest.mark.parametrize("spec,seg,text", CASES, ids=[c[0] for c in CASES])
def test_diff_names_what_the_behaviour_logged(spec, seg, text):
    sent = wire.packet(seg, 5, 77, 5)
    packets = handshake_then(seg) if seg.flags != "S" else []
    out, logged = through(spec, [*packets, sent])
    changes = diff(View(sent), View(out[-1]))
    assert any(c.text.startswith(text) for c in changes), [c.text for c in changes]
    assert logged and all(
        any(c.field == f or c.field.startswith(f + ".") for c in changes) for f in logged
    ), (logged, [c.field for c in changes])


def test_add_addr_address_nat_source_mss_and_moves_are_worded_as_a_reader_expects():
    base = wire.Segment(SRC, DST, 40000, 80, 1, 2, "A", vary="tsval")
    option = AddAddr(address=ipaddress.ip_address("10.0.2.1"), address_id=1, hmac=5)
    sent = wire.packet(base.with_options(wire.options_bytes([option])), 5, 1, 0)
    moved = AddAddr(address=ipaddress.ip_address("10.9.9.9"), address_id=1, hmac=5)
    after = wire.packet(base.with_options(wire.options_bytes([moved])), 5, 1, 0)
    assert [c.text for c in diff(View(sent), View(after))] == [
        "ADD_ADDR address 10.0.2.1 -> 10.9.9.9"
    ]
    natted = TcpPacket(sent)
    natted.buf[12:16] = ipaddress.ip_address("10.0.5.1").packed
    struct.pack_into("!H", natted.buf, 20, 61000)
    texts = [c.text for c in diff(View(sent), View(natted.to_bytes()))]
    assert texts == ["source 10.0.0.1:40000 -> 10.0.5.1:61000"]
    plain = wire.Segment(
        SRC, DST, 1, 2, 3, options=wire.options_bytes([wire.mss(1460), wire.window_scale(7)])
    )
    swapped = plain.with_options(wire.options_bytes([wire.window_scale(7), wire.mss(1400)]))
    texts = [
        c.text for c in diff(View(wire.packet(plain, 1, 1, 0)), View(wire.packet(swapped, 1, 1, 0)))
    ]
    assert "MSS 1460 -> 1400" in texts and any(t.startswith("TCP options reordered") for t in texts)


# --- the sweep on a simulated path ------------------------------------------------------------


class SimulatedPath:
    """Routers at hops 1..n-1 and the target at hop n: expired packets come back quoted (after
    `change` from hop `changed_at` on), silent routers say nothing, the target answers SYNs."""

    def __init__(self, hops=8, silent=(3,), change=None, changed_at=99, lose_first=()):
        self.hops, self.silent, self.change, self.changed_at = hops, set(silent), change, changed_at
        self.queue, self.now, self.lose_first, self.sent = [], 0.0, set(lose_first), []

    def send(self, packet, dst):
        self.now += 0.001
        ttl = packet[8]
        self.sent.append(ttl)
        if ttl in self.lose_first:
            self.lose_first.discard(ttl)
            return self.now
        if ttl >= self.hops:
            seg = parse_tcp(packet)
            answer = wire.Segment(
                DST,
                SRC,
                80,
                seg.sport,
                99,
                seg.seq + 1,
                "SA",
                options=wire.options_bytes([wire.mss(1400)]),
            )
            self.queue.append(
                Arrival(self.now + 0.01, tcp=parse_tcp(wire.packet(answer, 60, 1, 0)))
            )
        elif ttl not in self.silent:
            quoted = self.change(packet) if self.change and ttl >= self.changed_at else packet
            error = parse_icmp(icmp_v4(quoted), f"10.0.{ttl}.1", 4)
            self.queue.append(Arrival(self.now + 0.001 * ttl, icmp=error))
        return self.now

    def poll(self):
        return []

    def receive(self, until):
        ready = [a for a in self.queue]
        self.queue = []
        return ready


def strip_mpc(packet):
    p = TcpPacket(packet)
    p.options = bytes(p.options).replace(MpCapable(version=1).encode(), b"\x01" * 4)
    return p.to_bytes()


def test_parallel_sweep_asks_only_silent_hops_again_and_marks_the_first_change():
    path = SimulatedPath(hops=8, silent=(3,), change=strip_mpc, changed_at=5)
    sweep = engine.Sweep(syn(MpCapable(version=1)), 16, random.Random(1))
    engine.parallel(path, sweep, timeout=0.2, tries=3, pace=0)
    assert sweep.end_ttl == 8
    assert sorted(path.sent) == sorted([*list(range(1, 17)), 3, 3])
    result = probe_result("mp_capable", "", sweep, [], 0.1)
    hops = result["hops"]
    assert [h["ttl"] for h in hops] == list(range(1, 8))
    assert [h["ttl"] for h in hops if h["silent"]] == [3]
    assert result["first_change"]["ttl"] == 5
    assert result["first_change"]["changes"] == ["MP_CAPABLE removed: replaced by 4 NOPs"]
    assert [c["first"] for c in hops[5]["changes"]] == [False]
    assert hops[4]["since_previous"] == [
        {"change": "appeared", "text": "MP_CAPABLE removed: replaced by 4 NOPs"}
    ]
    assert result["destination"]["kind"] == "SYN/ACK" and result["destination"]["ttl"] == 8
    assert "plain TCP" in result["destination"]["text"]


def test_a_lost_answer_is_asked_again_and_found():
    path = SimulatedPath(hops=6, silent=(), lose_first=(2,))
    sweep = engine.Sweep(syn(), 10, random.Random(2))
    engine.parallel(path, sweep, timeout=0.2, tries=2, pace=0)
    assert set(sweep.answers) == {1, 2, 3, 4, 5} and sweep.rounds == 2


class PromptPath(SimulatedPath):
    """Answers arrive while the sweep is still sending."""

    def poll(self):
        return self.receive(None)


def test_a_sweep_sends_nothing_beyond_the_destination_once_the_target_answered():
    path = PromptPath(hops=6, silent=())
    sweep = engine.Sweep(syn(), 30, random.Random(5), hint=engine.PathHint())
    engine.parallel(path, sweep, timeout=0.2, tries=2, pace=0)
    assert path.sent == [1, 2, 3, 4, 5, 6] and sweep.end_ttl == 6
    later = engine.Sweep(syn(), 30, random.Random(6), hint=sweep.hint)  # another probe's
    engine.parallel(path, later, timeout=0.2, tries=2, pace=0)
    assert path.sent[6:] == [1, 2, 3, 4, 5, 6]
    alone = engine.Sweep(syn(), 30, random.Random(7))  # no hint: every TTL, as before
    engine.parallel(path, alone, timeout=0.2, tries=2, pace=0)
    assert path.sent[12:] == list(range(1, 31))


def test_sweeps_side_by_side_never_claim_each_others_quotes():
    seg = syn(MpCapable(version=1))
    mine = engine.Sweep(seg, 30, random.Random(8), slot=0, slots=6)
    other = engine.Sweep(seg, 30, random.Random(9), slot=5, slots=6)
    for ttl in (1, 15, 30):
        theirs = TcpPacket(other.packet(ttl))
        theirs.seq = (theirs.seq + 12345) & 0xFFFFFFFF  # only the IP ID still tells
        assert mine.match_quote(View(theirs.to_bytes())) is None
        assert other.match_quote(View(theirs.to_bytes())) == ttl
        assert mine.match_quote(View(mine.packet(ttl))) == ttl


def test_serial_sweep_stops_at_the_destination():
    path = SimulatedPath(hops=5, silent=(2,))
    sweep = engine.Sweep(syn(), 30, random.Random(3))
    engine.serial(path, sweep, timeout=0.01, tries=2)
    assert path.sent == [1, 2, 2, 3, 4, 5]
    assert sweep.end_ttl == 5 and set(sweep.answers) == {1, 3, 4}


def test_quotes_are_matched_by_sequence_when_the_ip_id_was_rewritten():
    seg = syn(MpCapable(version=1))
    sweep = engine.Sweep(seg, 30, random.Random(4))
    rewritten = TcpPacket(sweep.packet(7))
    rewritten.buf[4:6] = b"\x00\x01"
    assert sweep.match_quote(View(rewritten.to_bytes())) == 7
    other = wire.packet(wire.Segment(SRC, DST, 40001, 81, 5), 7, 1, 0)
    assert sweep.match_quote(View(other)) is None


@pytest.mark.parametrize("v6", [False, True])
def test_a_nat_that_keeps_quotes_readdresses_the_error_only(v6):
    from mbtest.packet.quote import retarget

    inside, outside, router = (
        (SRC6, "fd00:5::1", "fd00:6::1") if v6 else (SRC, "10.0.5.1", "10.0.6.1")
    )
    seg = syn(MpCapable(version=1), v6=v6)
    natted = TcpPacket(wire.packet(seg, 1, 9, 1))
    at = 8 if v6 else 12
    natted.buf[at : at + (16 if v6 else 4)] = ipaddress.ip_address(outside).packed
    struct.pack_into("!H", natted.buf, natted.ip_len, 61000)
    quote = natted.to_bytes()
    if v6:
        message = bytes([3, 0, 0, 0, 0, 0, 0, 0]) + quote
        outer = struct.pack(
            "!IHBB16s16s",
            6 << 28,
            len(message),
            58,
            60,
            ipaddress.ip_address(router).packed,
            ipaddress.ip_address(outside).packed,
        )
    else:
        message = icmp_v4(quote)
        outer = struct.pack(
            "!BBHHHBBH4s4s",
            0x45,
            0,
            20 + len(message),
            1,
            0,
            60,
            1,
            0,
            ipaddress.ip_address(router).packed,
            ipaddress.ip_address(outside).packed,
        )
    table = {(outside, 61000): (inside, 40000)}
    out = retarget(outer + message, table.get)
    assert out is not None and out[-len(quote) :] == quote  # the quote as the router sent it
    dst = out[24:40] if v6 else out[16:20]
    assert ipaddress.ip_address(dst) == ipaddress.ip_address(inside)
    from mbtest.mptcp.crypto import ones_complement_sum

    if v6:
        pseudo = out[8:40] + struct.pack("!I3xB", len(message), 58)
        assert ones_complement_sum(pseudo + out[40:]) == 0xFFFF
    else:
        assert ones_complement_sum(out[:20]) == 0xFFFF
    assert retarget(outer + message, {}.get) is None


def test_a_target_beyond_the_max_ttl_is_said_so_and_a_silent_one_too():
    sweep = engine.Sweep(syn(), 4, random.Random(5))
    engine.parallel(SimulatedPath(hops=8, silent=()), sweep, timeout=0.05, tries=1, pace=0)
    result = probe_result("plain_syn", "", sweep, [], 0.1)
    assert [h["ttl"] for h in result["hops"]] == [1, 2, 3, 4]
    assert result["destination"]["kind"] == "beyond max TTL"
    assert "within 4 hops" in result["destination"]["text"]
    sweep = engine.Sweep(syn(), 10, random.Random(6))
    engine.parallel(
        SimulatedPath(hops=30, silent=range(6, 30)), sweep, timeout=0.05, tries=2, pace=0
    )
    result = probe_result("plain_syn", "", sweep, [], 0.1)
    assert result["destination"]["kind"] == "silence"
    assert result["destination"]["text"] == "no answer from the target; hops 6-10 silent"
    assert [h["ttl"] for h in result["hops"]] == [1, 2, 3, 4, 5]


# --- ECMP-stable flows, short quotes, observability -------------------------------------------


@pytest.mark.parametrize("v6", [False, True])
def test_what_routers_hash_stays_the_same_for_every_ttl_of_a_sweep(v6):
    """Per-flow ECMP hashes addresses, ports and (IPv6) the flow label: all a sweep's TTLs
    keep them, so they take one path; the per-TTL key lives in TCP (and the IPv4 ID)."""
    for seg in (syn(MpCapable(version=1), v6=v6), data_segment(v6)):
        sweep = engine.Sweep(seg, 30, random.Random(11))
        views = [View(sweep.packet(ttl)) for ttl in range(1, 31)]
        hashed = {
            (v.ip_fields()["src"], v.ip_fields()["dst"], v.sport, v.dport, v.ip_fields().get(
                "ip.flow_label")) for v in views
        }  # fmt: skip
        assert len(hashed) == 1
        assert [sweep.match_quote(v) for v in views] == list(range(1, 31))
        ids = {v.ip_id for v in views}
        assert len(ids) == (30 if not v6 else 1)


def keyless_path_quote(sweep, ttl):
    """An 8-byte quote of the TTL's packet: IP header, ports and sequence number only."""
    packet = sweep.packet(ttl)
    return packet[: 40 + 8] if packet[0] >> 4 == 6 else packet[: 20 + 8]


def test_an_8_byte_ipv6_quote_inside_a_connection_is_tied_by_sending_its_ttl_alone():
    seg = data_segment(v6=True)
    sweep = engine.Sweep(seg, 5, random.Random(12))
    quote = View(keyless_path_quote(sweep, 3))
    assert sweep.match_quote(quote) is None  # no key in 8 bytes, one flow label for all

    class KeylessPath:
        """Hop 3 quotes 8 bytes; the others quote everything; the target at hop 5."""

        def __init__(self):
            self.queue, self.sent = [], []

        def send(self, packet, dst):
            view = View(packet)
            ttl = packet[7]
            self.sent.append(ttl)
            raw = packet[:48] if ttl == 3 else packet
            if ttl < 5:
                error = parse_icmp(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + raw, f"fd00:{ttl}::1", 6)
                self.queue.append(Arrival(0.0, icmp=error))
            assert view.ip_fields()["ip.flow_label"] == sweep.id_base
            return 0.0

        def poll(self):
            out, self.queue = self.queue, []
            return out

        def receive(self, until):
            return self.poll()

    path = KeylessPath()
    engine.parallel(path, sweep, timeout=0.05, tries=1, pace=0)
    assert set(sweep.answers) == {1, 2, 3, 4}
    assert sweep.tied_alone == [3] and sweep.keyless == 1  # the first one could not be placed
    assert path.sent[5:] == [3, 5]  # asked again alone (and one beyond the last answer)
    result = probe_result("dss", "", sweep, [], 0.1)
    assert any("sending that TTL alone" in n for n in result["notes"])


def test_a_change_is_placed_between_the_last_hop_that_showed_the_field_and_the_first_changed():
    path = SimulatedPath(hops=8, silent=(4,), change=strip_mpc, changed_at=5)
    sweep = engine.Sweep(syn(MpCapable(version=1)), 16, random.Random(1))
    engine.parallel(path, sweep, timeout=0.2, tries=1, pace=0)
    result = probe_result("mp_capable", "", sweep, [], 0.1)
    assert result["first_change"]["ttl"] == 5 and result["first_change"]["after_ttl"] == 3
    assert result["observability"] == {"last_router_ttl": 7, "complete": True, "hidden": []}


class ShortQuotes(SimulatedPath):
    """Routers from ``short_from`` on quote 8 bytes of TCP only."""

    def __init__(self, short_from, **kw):
        super().__init__(**kw)
        self.short_from = short_from

    def send(self, packet, dst):
        at = super().send(packet, dst)
        ttl = packet[8]
        if ttl >= self.short_from and self.queue and self.queue[-1].icmp is not None:
            cut = packet[:28]
            error = parse_icmp(icmp_v4(cut), f"10.0.{ttl}.1", 4)
            self.queue[-1] = Arrival(self.queue[-1].time, icmp=error)
        return at


def test_changes_behind_8_byte_quotes_are_not_observable_never_no_change():
    path = ShortQuotes(short_from=5, hops=8, silent=(), change=strip_mpc, changed_at=5)
    sweep = engine.Sweep(syn(MpCapable(version=1)), 16, random.Random(1))
    engine.parallel(path, sweep, timeout=0.2, tries=1, pace=0)
    result = probe_result("mp_capable", "", sweep, [], 0.1)
    assert result["first_change"] is None  # (the stripping happened: no quote can show it)
    seen = result["observability"]
    assert not seen["complete"] and seen["last_router_ttl"] == 7
    hidden = {h["fields"]: h for h in seen["hidden"]}
    assert set(hidden) == {"TCP header", "TCP options"}  # ports and sequence: still seen
    assert hidden["TCP options"]["to_ttl"] == 4 and hidden["TCP options"]["hidden"] == [5, 7]
    assert "not observable from here (hops 5-7 quoted too little)" in hidden["TCP options"]["text"]
    assert any("TCP options: a change after hop 4" in n for n in result["notes"])


def test_hops_that_differ_between_probes_are_named():
    from mbtest.probe.result import path_differs

    probes = [
        {"name": "a", "hops": [{"ttl": 1, "router": "r1"}, {"ttl": 2, "router": "x"}]},
        {"name": "b", "hops": [{"ttl": 1, "router": "r1"}, {"ttl": 2, "router": "y"}]},
        {"name": "c", "hops": [{"ttl": 1, "router": "r1"}, {"ttl": 2, "router": None}]},
    ]
    (differs,) = path_differs(probes)
    assert differs["ttl"] == 2 and differs["routers"] == {"x": ["a"], "y": ["b"]}
    assert "per-flow load balancing" in differs["text"]
    assert path_differs(probes[:1]) == []


def test_a_lost_last_answer_and_a_lost_reply_are_asked_again_up_to_the_known_distance():
    """Another probe of the run learnt the destination's distance (6): this sweep sends no
    further; hop 5's answer and the target's reply are lost the first time, and asked again
    (before: the sweep stopped at hop 4, the last that answered, and called the rest silent)."""
    path = SimulatedPath(hops=6, silent=(), lose_first=(5, 6))
    sweep = engine.Sweep(syn(), 30, random.Random(13), hint=engine.PathHint(distance=6))
    engine.parallel(path, sweep, timeout=0.05, tries=2, pace=0)
    assert path.sent == [1, 2, 3, 4, 5, 6, 5, 6]
    assert set(sweep.answers) == {1, 2, 3, 4, 5} and sweep.end_ttl == 6


def test_an_8_byte_ipv6_quote_is_placed_where_another_probe_of_the_run_saw_its_router():
    seg = data_segment(v6=True)
    hint = engine.PathHint()
    hint.seen("fd00:3::1", 3)  # (a SYN probe's quote from that router held its key)
    sweep = engine.Sweep(seg, 5, random.Random(14), hint=hint)
    for ttl in (1, 2, 3):
        sweep.sent[ttl] = (0.0, 1)
    cut = sweep.packet(3)[:48]
    error = parse_icmp(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + cut, "fd00:3::1", 6)
    sweep.feed(Arrival(0.01, icmp=error))
    assert sweep.keyless == 1 and 3 not in sweep.answers
    sweep.place_keyless()
    assert sweep.keyless == 0 and sweep.answers[3].router == "fd00:3::1"
    assert sweep.tied_by_router == [3]
    other = parse_icmp(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + cut, "fd00:9::1", 6)  # unknown router
    sweep.feed(Arrival(0.02, icmp=other))
    sweep.place_keyless()
    assert sweep.keyless == 1  # (left for sending alone)


class RequestHoldingPath(SimulatedPath):
    """A target that keeps the request the first SYN to reach it opened: a later SYN of the
    same 4-tuple is answered by a pure ACK naming that first SYN (Linux's challenge ACK)."""

    request_ack = None

    def send(self, packet, dst):
        ttl = packet[8]
        if ttl >= self.hops and ttl not in self.lose_first and self.request_ack is not None:
            self.now += 0.001
            self.sent.append(ttl)
            seg = parse_tcp(packet)
            ack = wire.Segment(DST, SRC, 80, seg.sport, 100, self.request_ack, "A")
            self.queue.append(Arrival(self.now + 0.01, tcp=parse_tcp(wire.packet(ack, 60, 1, 0))))
            return self.now
        at = super().send(packet, dst)
        if ttl >= self.hops and self.request_ack is None and self.queue and self.queue[-1].tcp:
            self.request_ack = self.queue[-1].tcp.ack
        return at


def test_a_lost_syn_ack_then_a_challenge_ack_still_gives_the_right_distance():
    """The TTL-6 SYN's answer is lost, the TTL-7 SYN opens the request; asked again alone,
    TTL 6 gets a pure ACK naming TTL 7's SYN: it answers TTL 6 (the target is at 6, not 7,
    and there is no silent router at 6)."""
    path = RequestHoldingPath(hops=6, silent=(), lose_first=(6,))
    sweep = engine.Sweep(syn(), 7, random.Random(15))
    engine.parallel(path, sweep, timeout=0.05, tries=2, pace=0)
    assert path.sent == [1, 2, 3, 4, 5, 6, 7, 6]
    assert sweep.end_ttl == 6
    result = probe_result("mp_capable", "", sweep, [], 0.1)
    assert [h["ttl"] for h in result["hops"]] == [1, 2, 3, 4, 5]


def test_a_quote_cut_inside_the_options_cannot_show_an_option_change():
    """(a partial quote holds the options field's start only: a change after the cut is
    not observable, so the hop after the change must not be called a full view)"""
    from mbtest.probe.result import covers

    sent = wire.packet(syn(MpCapable(version=1)), 5, 7, 5)
    assert covers(View(sent), "MP_CAPABLE.version")
    assert not covers(View(sent[: 20 + 24]), "MP_CAPABLE.version")  # (cut inside options)
    assert covers(View(sent[: 20 + 24]), "tcp.window")


def test_an_8_byte_quote_after_a_sequence_rewrite_is_still_placed_by_its_router():
    seg = data_segment(v6=True)
    hint = engine.PathHint()
    hint.seen("fd00:4::1", 4)
    sweep = engine.Sweep(seg, 6, random.Random(16), hint=hint)
    sweep.sent[4] = (0.0, 1)
    shifted = bytearray(sweep.packet(4)[:48])
    shifted[44:48] = (seg.seq + 12345).to_bytes(4, "big")  # (a middlebox shifted it)
    error = parse_icmp(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + bytes(shifted), "fd00:4::1", 6)
    sweep.feed(Arrival(0.01, icmp=error))
    sweep.place_keyless()
    assert sweep.answers[4].router == "fd00:4::1"


def test_a_late_quote_of_a_router_known_elsewhere_is_not_the_lone_ttls():
    seg = data_segment(v6=True)
    sweep = engine.Sweep(seg, 6, random.Random(17), hint=engine.PathHint())
    sweep.hint.seen("fd00:3::1", 3)
    sweep.alone = 2  # (TTL 2 in flight alone; hop 3's late answer arrives)
    late = parse_icmp(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + sweep.packet(3)[:48], "fd00:3::1", 6)
    sweep.feed(Arrival(0.01, icmp=late))
    assert 2 not in sweep.answers and sweep.keyless == 1
