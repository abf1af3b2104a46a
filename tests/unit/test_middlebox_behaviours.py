"""Userspace behaviours on bytes: what goes in, what comes out, checksums valid, log right."""

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6

from mbtest.errors import PacketError
from mbtest.middlebox.flows import FlowTracker
from mbtest.middlebox.params import MiddleboxError, parse_spec
from mbtest.middlebox.spec import MiddleboxSpec
from mbtest.mptcp.options import AddAddr, Dss, MpCapable, MpJoinSyn, decode
from mbtest.mptcp.scapy_glue import from_scapy, scapy_options
from mbtest.packet.edit import TcpPacket, option_spans, rewrite_options
from mbtest.packet.headers import parse_tcp

MPC = MpCapable(checksum_required=True)
C, S = ("10.0.0.1", 40000), ("10.0.9.2", 80)


def pkt(src, dst, flags, options=(), payload=b"", v6=False, seq=1000, ack=0):
    if v6:
        ip = IPv6(
            src="fd00::1" if src == C else "fd00::2", dst="fd00::2" if src == C else "fd00::1"
        )
    else:
        ip = IP(src=src[0], dst=dst[0])
    layer = TCP(
        sport=src[1],
        dport=dst[1],
        flags=flags,
        seq=seq,
        ack=ack,
        options=scapy_options([("MSS", 1460), *options]),
    )
    return bytes(ip / layer / payload)


def run(spec, packets):
    """Feed packets through a behaviour; return (verdicts, outputs as TcpPacket or None)."""
    behaviour = MiddleboxSpec.parse(spec).build()
    tracker = FlowTracker()
    verdicts = []
    for data in packets:
        p = TcpPacket(data)
        verdicts.append(behaviour.handle(p, tracker.observe(p)))
    return verdicts


def handshake(v6=False, syn_options=(MPC,)):
    return [
        pkt(C, S, "S", syn_options, v6=v6),
        pkt(S, C, "SA", [MpCapable(checksum_required=True, sender_key=1)], v6=v6, ack=1001),
        pkt(
            C,
            S,
            "A",
            [MpCapable(checksum_required=True, sender_key=2, receiver_key=1)],
            v6=v6,
            seq=1001,
        ),
        pkt(
            C,
            S,
            "PA",
            [Dss(dsn=5, subflow_seq=1, data_length=5, checksum=7)],
            b"hello",
            v6=v6,
            seq=1001,
        ),
    ]


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
@pytest.mark.parametrize("mode", ["nop", "remove", "eol"])
def test_strip_option_in_every_mode_keeps_the_packet_well_formed(v6, mode):
    verdicts = run(f"strip-option:segments=syn,mode={mode}", handshake(v6))
    assert [v.action for v in verdicts] == ["modified", "accept", "accept", "accept"]
    out = TcpPacket(verdicts[0].packet)
    assert out.checksums_valid()
    seg = parse_tcp(verdicts[0].packet)  # an independent parse of the result
    assert seg.mptcp_options() == []
    kinds = [k for k, _ in seg.options()]
    assert 2 in kinds  # MSS survives
    if mode == "remove":
        assert len(seg.options_raw) == 4 and out.tcp_header_len == 24
    elif mode == "nop":
        assert seg.options_raw[4:8] == b"\x01\x01\x01\x01"
    else:
        assert kinds[-1] == 0  # EOL
    (log,) = verdicts[0].changes
    assert log["field"] == f"tcp.options ({mode})" and log["removed"] == MPC.encode().hex()
    assert log["direction"] == "c>s" and log["packet"] == 1


def test_strip_option_filters_by_direction_segment_and_subtype():
    verdicts = run("strip-option:subtypes=DSS,segments=data,direction=c2s", handshake())
    assert [v.action for v in verdicts] == ["accept", "accept", "accept", "modified"]
    assert from_scapy(TCP(bytes(IP(verdicts[3].packet)[TCP])).options) == []
    verdicts = run("strip-option:segments=synack,direction=c2s", handshake())
    assert all(v.action == "accept" for v in verdicts)
    verdicts = run("strip-option:segments=all,after=2", handshake())
    assert [v.action for v in verdicts] == ["accept", "accept", "modified", "accept"]


def test_drop_option_drops_only_what_it_names():
    joins = [pkt(C, S, "S", [MpJoinSyn(token=5, nonce=6)]), pkt(C, S, "S", [MPC], seq=7)]
    assert [v.action for v in run("drop-option:subtypes=MP_JOIN", joins)] == ["drop", "accept"]
    echo = pkt(C, S, "A", [AddAddr(echo=True)])
    announce = pkt(S, C, "A", [AddAddr(hmac=1)])
    assert [v.action for v in run("drop-option:subtypes=ADD_ADDR_ECHO", [echo, announce])] == [
        "drop",
        "accept",
    ]
    verdict = run("drop-option:subtypes=ADD_ADDR", [announce])[0]
    assert verdict.action == "drop" and verdict.changes[0]["before"] == "carrying ADD_ADDR"


@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_rst_join_drops_the_join_and_forges_a_valid_reset(v6):
    join = pkt(C, S, "S", [MpJoinSyn(token=5, nonce=6)], v6=v6, seq=5000)
    (verdict,) = run("rst-join", [join])
    assert verdict.action == "drop"
    (rst,) = verdict.inject
    forged = TcpPacket(rst)
    assert forged.checksums_valid() and forged.rst and forged.is_ack
    assert (forged.sport, forged.dport, forged.ack) == (80, 40000, 5001)
    assert forged.dst == ("fd00::1" if v6 else "10.0.0.1")
    assert [c["field"] for c in verdict.changes] == ["packet", "injected"]


@pytest.mark.parametrize(
    "spec,packet,check",
    [
        (
            "mangle-option:field=MP_CAPABLE.checksum_required,value=0",
            pkt(C, S, "S", [MPC]),
            lambda o: o.checksum_required is False,
        ),
        (
            "mangle-option:field=MP_CAPABLE.version,value=0,segments=synack",
            pkt(S, C, "SA", [MpCapable(sender_key=9)]),
            lambda o: o.version == 0,
        ),
        (
            "mangle-option:field=ADD_ADDR.address,value=10.9.9.9",
            pkt(S, C, "A", [AddAddr(hmac=3)]),
            lambda o: str(o.address) == "10.9.9.9",
        ),
        (
            "mangle-option:field=MP_JOIN.token,value=0x1234",
            pkt(C, S, "S", [MpJoinSyn(token=5)]),
            lambda o: o.token == 0x1234,
        ),
        (
            "mangle-option:field=DSS.dsn,value=99",
            pkt(C, S, "A", [Dss(dsn=5, subflow_seq=1, data_length=0)]),
            lambda o: o.dsn == 99,
        ),
    ],
)
def test_mangle_option_rewrites_one_field(spec, packet, check):
    (verdict,) = run(spec, [packet])
    assert verdict.action == "modified"
    out = TcpPacket(verdict.packet)
    assert out.checksums_valid() and len(out.buf) == len(packet)
    (span,) = out.mptcp_spans()
    assert check(decode(bytes(out.options[span.start : span.end]), strict=False))
    assert verdict.changes[0]["field"] == spec.split("field=")[1].split(",")[0]


def test_payload_flip_changes_bytes_and_keeps_the_tcp_checksum_valid():
    verdicts = run("payload-flip:segment=1,offset=1,count=2", handshake())
    assert [v.action for v in verdicts] == ["accept", "accept", "accept", "modified"]
    out = TcpPacket(verdicts[3].packet)
    assert bytes(out.payload) == b"h" + bytes([ord("e") ^ 0xFF, ord("l") ^ 0xFF]) + b"lo"
    assert out.checksums_valid()
    assert verdicts[3].changes[0]["before"] == b"el".hex()


def test_ips_alert_only_logs():
    verdicts = run("ips-alert", handshake())
    assert [v.action for v in verdicts] == ["accept"] * 4
    assert [len(v.changes) for v in verdicts] == [1, 1, 0, 0]


def test_option_rewrites_on_raw_fields():
    raw = bytes.fromhex("020405b41e04018101011e0350")
    spans = [s for s in option_spans(raw) if s.kind == 30]
    assert rewrite_options(raw, spans, "remove") == bytes.fromhex("020405b40101")
    assert rewrite_options(raw, spans[:1], "nop") == bytes.fromhex("020405b40101010101011e0350")
    assert rewrite_options(raw, spans[1:], "eol") == bytes.fromhex("020405b41e0401810101000000")
    with pytest.raises(PacketError):
        option_spans(bytes.fromhex("1e10"))


@pytest.mark.parametrize(
    "spec,message",
    [
        ("frob", "unknown middlebox behaviour 'frob'"),
        (
            "strip-option:mode=shred",
            "parameter mode='shred' is not valid: expected one of nop, remove, eol",
        ),
        (
            "strip-option:subtypes=MP_CAPABLE+BOGUS",
            "parameter subtypes='MP_CAPABLE+BOGUS' is not valid",
        ),
        (
            "payload-flip:count=0",
            "parameter count='0' is not valid: expected an integer in [1, 65535]",
        ),
        ("payload-flip:every=two", "parameter every='two' is not valid"),
        ("pass:speed=9", "pass: unknown parameter 'speed' (parameters: none)"),
        (
            "mangle-option:field=ADD_ADDR.address,value=banana",
            "value='banana' does not suit field ADD_ADDR.address",
        ),
        ("strip-option:mode", "'mode' is not key=value"),
        (":mode=nop", "has no behaviour name"),
    ],
)
def test_bad_specifications_are_one_clear_sentence(spec, message):
    with pytest.raises(MiddleboxError) as info:
        MiddleboxSpec.parse(spec).build()
    assert message in str(info.value) and "\n" not in str(info.value)


def test_spec_syntax_round_trips():
    behaviour = MiddleboxSpec.parse("strip-option:subtypes=DSS+MP_JOIN,mode=remove").build()
    assert parse_spec(behaviour.spec)[1]["subtypes"] == "DSS+MP_JOIN"
    assert MiddleboxSpec.parse(behaviour.spec).build().params == behaviour.params
    assert MiddleboxSpec.parse(
        {"behaviour": "strip-option", "subtypes": ["DSS"]}
    ).build().subtypes == ("DSS",)


@pytest.mark.parametrize("start,size", [(0, 1), (1, 1), (3, 4), (6, 7), (1399, 1), (0, 1400)])
def test_incremental_checksum_equals_a_full_recomputation(start, size):
    packet = TcpPacket(pkt(C, S, "A", [], bytes(range(256)) * 5 + b"x" * 120))
    packet.to_bytes()
    at = packet.ip_len + packet.tcp_header_len + start
    packet.patch(at, bytes((b + 77) & 0xFF for b in packet.buf[at : at + size]))
    assert packet.checksums_valid()


def test_seq_rewrite_shifts_client_sequence_and_server_acks_and_sacks():
    from scapy.layers.inet import TCP as T

    packets = [
        pkt(C, S, "S", [MPC], seq=1000),
        pkt(S, C, "SA", [("SAck", (1500, 1600))], seq=50, ack=1001),
    ]
    verdicts = run("seq-rewrite:delta=100", packets)
    assert TcpPacket(verdicts[0].packet).seq == 1100
    out = TcpPacket(verdicts[1].packet)
    assert out.ack == 901 and out.checksums_valid()
    sack = dict(T(bytes(out.buf[out.ip_len :])).options)["SAck"]
    assert sack == (1400, 1500)
    assert [c["field"] for c in verdicts[1].changes] == ["tcp.ack", "tcp.options (SACK)"]


def test_window_shrink_and_ipid_rewrite_keep_checksums_valid():
    (verdict,) = run("window-shrink:divisor=4", [pkt(C, S, "A", [], b"data")])
    out = TcpPacket(verdict.packet)
    assert out.checksums_valid() and verdict.changes[0]["after"] == out.window
    (verdict,) = run("ipid-rewrite:start=7", [pkt(C, S, "A", [], b"data")])
    out = TcpPacket(verdict.packet)
    assert out.checksums_valid() and int.from_bytes(out.buf[4:6], "big") == 7


def flow_with_data(payloads, v6=False):
    packets = [pkt(C, S, "S", [MPC], v6=v6, seq=999), pkt(S, C, "SA", [], v6=v6, seq=5, ack=1000)]
    seq = 1000
    for data in payloads:
        dss = Dss(dsn=seq, subflow_seq=seq - 999, data_length=len(data))
        packets.append(pkt(C, S, "PA", [dss], data, v6=v6, seq=seq, ack=6))
        seq += len(data)
    return packets


@pytest.mark.parametrize("kept", ["first", "second", "both"])
@pytest.mark.parametrize("v6", [False, True], ids=["ipv4", "ipv6"])
def test_split_cuts_a_segment_in_two_with_options_where_asked(kept, v6):
    verdicts = run(f"split:at=3,options={kept}", flow_with_data([b"abcdefgh"], v6))
    verdict = verdicts[-1]
    assert verdict.action == "drop"
    first, second = (TcpPacket(p) for p in verdict.inject)
    assert (bytes(first.payload), bytes(second.payload)) == (b"abc", b"defgh")
    assert (first.seq, second.seq) == (1000, 1003)
    assert first.checksums_valid() and second.checksums_valid()
    has = [bool(p.mptcp_spans()) for p in (first, second)]
    assert has == {"first": [True, False], "second": [False, True], "both": [True, True]}[kept]


def test_coalesce_merges_in_sequence_segments_and_releases_on_time():
    behaviour = MiddleboxSpec.parse("coalesce:max_size=100,hold_ms=1").build()
    tracker = FlowTracker()
    actions = []
    for data in flow_with_data([b"aaa", b"bbb", b"ccc"]):
        p = TcpPacket(data)
        actions.append(behaviour.handle(p, tracker.observe(p)))
    assert [v.action for v in actions] == ["accept", "accept", "drop", "drop", "drop"]
    released = behaviour.tick(now=1e12)
    (merged,) = released.inject
    out = TcpPacket(merged)
    assert bytes(out.payload) == b"aaabbbccc" and out.seq == 1000 and out.checksums_valid()
    assert released.changes[0]["before"] == 3


def test_payload_rewrite_changes_length_and_shifts_sequence_and_acks():
    packets = flow_with_data([b"xx mptcp yy", b"plain"])
    packets.append(pkt(S, C, "A", [], seq=6, ack=1016))  # acks both, in the rewritten space
    verdicts = run("payload-rewrite:find=mptcp,replace=MPTCP-ALG", packets)
    rewritten, shifted, ack = (TcpPacket(v.packet) for v in verdicts[2:])
    assert bytes(rewritten.payload) == b"xx MPTCP-ALG yy" and rewritten.seq == 1000
    assert shifted.seq == 1011 + 4 and bytes(shifted.payload) == b"plain"
    assert ack.ack == 1016 - 4
    assert all(p.checksums_valid() for p in (rewritten, shifted, ack))


def test_two_handshakes_crossing_the_kernel_observer_pair_with_their_own(tmp_path):
    """SYN/ACKs leave Linux with IP ID 0: two flows' SYN/ACKs seen leaving in the other
    order must still pair with their own arrivals (no invented kernel change)."""
    from mbtest.middlebox.log import Log
    from mbtest.middlebox.observer import KernelObserver

    log = Log(str(tmp_path / "log"), "t")
    observer = KernelObserver(log, FlowTracker(), {"client": "a", "server": "b"})
    first = pkt(S, C, "SA", [MpCapable(checksum_required=False, sender_key=1)], seq=111, ack=9)
    other_client = ("10.0.0.1", 40001)
    second = pkt(S, other_client, "SA", [], seq=222, ack=19)
    same_id = []
    for packet in (first, second):
        p = TcpPacket(packet)
        p.buf[4:6] = b"\x00\x00"  # as Linux sends them
        same_id.append(p.to_bytes())
    observer.before(same_id[0])
    observer.before(same_id[1])
    observer.after(same_id[1])  # leaving in the other order
    observer.after(same_id[0])
    log.close()
    assert (tmp_path / "log").read_text() == ""


def test_a_packet_the_slot_consumed_is_logged_as_dropped_over_ipv6_too(tmp_path, monkeypatch):
    """IPv6 keys hold the TSval (a flow's packets share one flow label): the packets that
    never left (their hop limit ran out in the slot) are still logged, not a crash."""
    import json

    from mbtest.middlebox import observer as observed
    from mbtest.middlebox.log import Log

    log = Log(str(tmp_path / "log"), "t")
    observer = observed.KernelObserver(log, FlowTracker(), {"client": "a", "server": "b"})
    for v6 in (False, True):
        observer.before(pkt(C, S, "S", [MpCapable(version=1)], v6=v6))
    monkeypatch.setattr(observed.time, "monotonic", lambda: 1e12)  # (long settled)
    observer.log_consumed()
    log.close()
    entries = [json.loads(line) for line in (tmp_path / "log").read_text().splitlines()]
    assert [(e["field"], e["after"], e["flags"]) for e in entries] == [("packet", "dropped", 2)] * 2


# --- the quote trimmer of emulated routers ----------------------------------------------------


@pytest.mark.parametrize("v6", [False, True])
def test_quote_trim_cuts_a_routers_icmp_error_to_8_bytes_with_right_checksums(v6):
    from scapy.layers.inet import ICMP
    from scapy.layers.inet6 import ICMPv6TimeExceeded

    from mbtest.middlebox.behaviours.icmp import QuoteTrim, trim_quote

    opts = scapy_options([("MSS", 1460), MpCapable(version=1)])
    if v6:
        inner = IPv6(src="fd00::1", dst="fd00:9::2", hlim=1) / TCP(
            sport=4000, dport=80, options=opts
        )
        error = IPv6(src="fd00:5::1", dst="fd00::1") / ICMPv6TimeExceeded() / bytes(inner)
    else:
        inner = IP(src="10.0.0.1", dst="10.0.9.2", ttl=1) / TCP(sport=4000, dport=80, options=opts)
        error = IP(src="10.0.5.1", dst="10.0.0.1") / ICMP(type=11) / bytes(inner)
    raw = bytes(error)
    behaviour = QuoteTrim({"bytes": 8})
    out, entry = behaviour.handle_icmp_error(raw, None)
    header = 40 if v6 else 20
    assert len(out) == header + 8 + header + 8
    assert out[header + 8 :] == bytes(inner)[: header + 8]  # IP header, ports, sequence
    outer = IPv6 if v6 else IP
    sums = [(ICMPv6TimeExceeded, "cksum")] if v6 else [(IP, "chksum"), (ICMP, "chksum")]
    for layer, name in sums:  # as scapy computes them afresh
        fresh = outer(out)
        setattr(fresh[layer], name, None)
        assert getattr(outer(out)[layer], name) == getattr(outer(bytes(fresh))[layer], name)
    assert entry["field"] == "icmp quote" and entry["after"] == header + 8
    assert entry["before"] == len(bytes(inner))
    assert trim_quote(out, 8) is None  # already that short: left alone
    with pytest.raises(PacketError):
        trim_quote(raw[: header + 4], 8)
    with pytest.raises(PacketError):
        trim_quote(b"\x50" + raw[1:], 8)
