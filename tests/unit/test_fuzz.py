"""A short fuzzing budget in every test run (``make fuzz`` runs the long one): what reads
bytes from outside gives a result or the project's own error, and keeps serving after."""

import contextlib
import io

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from mbtest.errors import MbtestError
from mbtest.middlebox.flows import FlowTracker
from mbtest.middlebox.handler import PacketHandler
from mbtest.middlebox.log import Log
from mbtest.middlebox.observer import KernelObserver
from mbtest.middlebox.spec import MiddleboxSpec
from mbtest.packet.edit import TcpPacket
from mbtest.packet.headers import parse_tcp
from mbtest.packet.pcap import frames_from
from mbtest.packet.quote import View, parse_icmp
from tests.fuzz import run as fuzz
from tests.fuzz import seeds

FAST = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def test_the_harness_finds_no_foreign_exception_and_every_target_still_serves():
    result = fuzz.run(packets=30_000, captures=3_000, seed=20261130)
    assert result["foreign_exceptions"] == 0, result["findings"][:3]
    assert result["all_serving"], result["serving_after"]
    assert result["targets"] >= 30  # every userspace behaviour, observer, probe, captures
    assert all(n > 0 for n in result["malformed_seen"].values())  # bad input really reached


@FAST
@given(st.binary(max_size=120))
def test_packet_views_give_a_result_or_our_error(data):
    for parse in (TcpPacket, parse_tcp):
        with contextlib.suppress(MbtestError):
            parse(data)
    view = View(data)
    view.quote_class(), view.ip_fields(), view.tcp_fields(), view.tsval(), view.payload
    parse_icmp(data, "10.0.0.1", 4), parse_icmp(data, "fd00::1", 6)


@FAST
@given(st.binary(max_size=300))
def test_capture_reader_gives_frames_or_our_error(data):
    for prefix in (b"", b"\xd4\xc3\xb2\xa1", b"\x0a\x0d\x0d\x0a"):
        with contextlib.suppress(MbtestError):
            list(frames_from(io.BytesIO(prefix + data), "x"))


def test_a_41_byte_ipv6_packet_does_not_stop_the_kernel_observer(tmp_path):
    """It killed the egress thread once (the IPv6 extension walk had no bounds checks)."""
    log = Log(str(tmp_path / "log"), "t")
    observer = KernelObserver(log, FlowTracker(), {"client": "a", "server": "b"})
    short = bytes([0x60, 0, 0, 0, 0, 1, 0, 64]) + bytes(32) + b"\x06"  # hop-by-hop, cut
    observer.before(short)
    observer.after(short)
    assert observer.malformed == 1
    good = seeds.tcp_packets()[0]
    observer.before(good)
    changed = bytearray(good)
    changed[-1] ^= 0xFF
    observer.after(bytes(changed))
    log.close()
    assert "tcp.options (kernel)" in (tmp_path / "log").read_text()


def test_an_option_running_past_the_header_is_malformed_not_fatal_for_every_behaviour():
    good = next(p for p in seeds.tcp_packets() if p.endswith(seeds.PAYLOAD))  # with a DSS
    bad = bytearray(good)
    bad[20 + 20 + 12 + 1] = 0xF0  # the DSS length byte (after NOP NOP timestamps): too long
    readers = ("strip-option", "drop-option", "mangle-option")  # read every segment's options
    for spec in fuzz.behaviour_specs():
        handler = PacketHandler(MiddleboxSpec.parse(spec).build())
        outcome = handler(bytes(bad))
        assert outcome.action in ("accept", "drop", "modified"), spec
        if spec in readers:  # those that read this packet's options say why they could not
            assert outcome.malformed and "runs past the header" in outcome.malformed, spec
        if outcome.malformed:
            assert outcome.changes[0]["field"] == "malformed"
        assert handler(good).malformed is None  # and the next good packet is handled
