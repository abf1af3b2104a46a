"""Raw pcap/pcapng reading and byte-level headers, against captures scapy writes."""

import pytest
from scapy.layers.inet import IP, TCP
from scapy.layers.inet6 import IPv6, IPv6ExtHdrHopByHop
from scapy.layers.l2 import CookedLinux, Dot1Q, Ether
from scapy.utils import wrpcap, wrpcapng

from mbtest.errors import CaptureError
from mbtest.mptcp.options import AddAddr, Dss, MpCapable, MpTcpRst, decode
from mbtest.mptcp.scapy_glue import from_scapy, scapy_options, to_scapy
from mbtest.observe.decode import decode_capture
from mbtest.packet.headers import parse_tcp, tcp_options

MPC = MpCapable(checksum_required=True, sender_key=0x1122334455667788)
DSS = Dss(
    data_ack=7, data_ack_8_bytes=False, dsn=1000, subflow_seq=1, data_length=5, checksum=0xABCD
)


def segment(options, payload=b"", flags="S", sport=40000, dport=80):
    return TCP(sport=sport, dport=dport, flags=flags, options=scapy_options(options)) / payload


def test_scapy_glue_round_trips_through_scapys_own_dissection():
    wire = bytes(IP(src="10.0.0.1", dst="10.0.0.2") / segment([MPC, ("NOP", None), DSS]))
    dissected = IP(wire)[TCP].options
    assert from_scapy(dissected) == [MPC, DSS]
    assert to_scapy(MPC) == (30, MPC.encode()[2:])


@pytest.mark.parametrize(
    "packet",
    [
        IP(src="10.0.0.1", dst="10.0.0.2", id=77) / segment([MPC], b"hello"),
        IPv6(src="fd00::1", dst="fd00::2", fl=0x12345) / segment([MPC], b"hello"),
        IPv6(src="fd00::1", dst="fd00::2") / IPv6ExtHdrHopByHop() / segment([MPC], b"hello"),
    ],
    ids=["ipv4", "ipv6", "ipv6-hop-by-hop"],
)
def test_headers_parse_what_scapy_builds(packet):
    seg = parse_tcp(bytes(packet))
    assert (seg.sport, seg.dport, seg.payload, seg.flag_string) == (40000, 80, b"hello", "S")
    assert seg.mptcp_options() == [MPC]
    assert seg.ip_id == (
        77 if packet.version == 4 else (0x12345 if IPv6ExtHdrHopByHop not in packet else 0)
    )


def test_non_tcp_and_later_fragments_are_skipped_and_garbage_is_an_error():
    from scapy.layers.inet import UDP

    from mbtest.errors import PacketError

    assert parse_tcp(bytes(IP() / UDP())) is None
    assert parse_tcp(bytes(IP(frag=100, proto=6) / (b"x" * 30))) is None
    for bad in (b"\x45\x00", b"\x60" + b"\0" * 10, b"\x10abc", bytes(IP(proto=6) / b"short")):
        with pytest.raises(PacketError):
            parse_tcp(bad)
    with pytest.raises(PacketError, match="runs past"):
        tcp_options(b"\x1e\x10\x00")


def frames():
    return [
        Ether(dst="02:00:00:00:00:02") / IP(src="10.0.0.1", dst="10.0.0.2") / segment([MPC]),
        Ether(dst="02:00:00:00:00:02")
        / IP(src="10.0.0.2", dst="10.0.0.1")
        / segment([DSS], b"abcde", flags="PA", sport=80, dport=40000),
        Ether(dst="02:00:00:00:00:02")
        / Dot1Q(vlan=5)
        / IPv6(src="fd00::1", dst="fd00::2")
        / segment([AddAddr(echo=True)], flags="A"),
        Ether(dst="02:00:00:00:00:02")
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / segment([], flags="A"),
        Ether(dst="02:00:00:00:00:02")
        / IP(src="10.0.0.1", dst="10.0.0.2")
        / segment([MpTcpRst(reason=6)], flags="R"),
    ]


@pytest.mark.parametrize("writer", [wrpcap, wrpcapng], ids=["pcap", "pcapng"])
def test_decode_capture_reads_pcap_and_pcapng(tmp_path, writer):
    path = tmp_path / "c.cap"
    writer(str(path), frames())
    records = list(decode_capture(path))
    assert [r.frame for r in records] == [1, 2, 3, 5]
    assert [r.options for r in records] == [
        [MPC],
        [DSS],
        [AddAddr(echo=True)],
        [MpTcpRst(reason=6)],
    ]
    assert [r.direction for r in records] == ["c>s", "s>c", "?", "c>s"]
    assert records[2].flow == "[fd00::1]:40000 > [fd00::2]:80"
    assert len(list(decode_capture(path, only_mptcp=False))) == 5


def test_linux_cooked_and_raw_link_types(tmp_path):
    path = tmp_path / "sll.pcap"
    wrpcap(str(path), [CookedLinux(proto=0x0800) / IP() / segment([MPC])])
    assert [r.options for r in decode_capture(path)] == [[MPC]]
    raw = tmp_path / "raw.pcap"
    wrpcap(str(raw), [IP() / segment([MPC])], linktype=101)
    assert [r.options for r in decode_capture(raw)] == [[MPC]]


def test_a_malformed_option_is_reported_not_fatal(tmp_path):
    bad = (30, bytes.fromhex("2001"))  # DSS claiming a Data ACK it does not carry
    path = tmp_path / "bad.pcap"
    wrpcap(
        str(path),
        [
            Ether(dst="02:00:00:00:00:02") / IP() / TCP(options=[bad]),
            Ether(dst="02:00:00:00:00:02") / IP() / segment([MPC]),
        ],
    )
    first, second = decode_capture(path)
    assert first.options == [] and "DSS with flags 0x01 must be 8 bytes, not 4" in first.errors[0]
    assert second.options == [MPC]


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "no such file"),
        (b"", "is empty"),
        (b"hello world, not a capture", "not a pcap or pcapng file"),
        (b"\xd4\xc3\xb2\xa1\x02\x00", "truncated inside the pcap file header"),
    ],
)
def test_bad_capture_files_get_one_clear_error(tmp_path, content, message):
    path = tmp_path / "x.pcap"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(CaptureError, match=message):
        list(decode_capture(path))


@pytest.mark.parametrize("writer", [wrpcap, wrpcapng], ids=["pcap", "pcapng"])
def test_a_truncated_capture_says_where(tmp_path, writer):
    path = tmp_path / "t.cap"
    writer(str(path), frames())
    path.write_bytes(path.read_bytes()[:-30])
    with pytest.raises(CaptureError, match="truncated"):
        list(decode_capture(path))


def test_decoded_options_equal_wire_bytes():
    for option in (MPC, DSS, AddAddr(echo=True), MpTcpRst(reason=6)):
        assert decode(option.encode()) == option
