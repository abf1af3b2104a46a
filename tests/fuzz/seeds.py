"""Well-formed packets and captures to mutate: IPv4 and IPv6 TCP segments carrying every
kind of MPTCP option, ICMP and ICMPv6 errors quoting them, and recorded pcap/pcapng files."""

from __future__ import annotations

import struct
from pathlib import Path

from mbtest.mptcp import crypto
from mbtest.mptcp.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    RemoveAddr,
)
from mbtest.probe import wire

DATA = Path(__file__).resolve().parent.parent / "data"
V4 = ("10.0.0.1", "10.0.9.2")
V6 = ("fd00::1", "fd00:9::2")
PAYLOAD = b"GET /mptcp/index.html HTTP/1.1\r\nHost: example\r\n\r\n"

OPTION_SETS = [
    ("S", [MpCapable(version=1, checksum_required=True)]),
    ("SA", [MpCapable(version=1, sender_key=0x1122334455667788)]),
    ("A", [MpCapable(version=1, sender_key=1, receiver_key=2)]),
    ("PA", [Dss(data_ack=5, dsn=1000, subflow_seq=1, data_length=len(PAYLOAD),
                checksum=crypto.dss_checksum(1000, 1, len(PAYLOAD), PAYLOAD))]),
    ("PA", [Dss(data_ack=5, dsn=1000, subflow_seq=1, data_length=len(PAYLOAD))]),
    ("S", [MpJoinSyn(token=0x12345678, nonce=7, address_id=1)]),
    ("SA", [MpJoinSynAck(hmac=1, nonce=2, address_id=1)]),
    ("A", [MpJoinAck(hmac=bytes(20))]),
    ("A", [AddAddr(address_id=2, address=__import__("ipaddress").ip_address("10.3.6.1"),
                   hmac=0x0102030405060708)]),
    ("A", [AddAddr(address_id=2, address=__import__("ipaddress").ip_address("10.3.6.1"),
                   echo=True)]),
    ("A", [RemoveAddr(address_ids=(2, 3))]),
    ("A", [MpPrio(backup=True)]),
    ("A", [MpFail(dsn=99)]),
    ("RA", [MpFastclose(receiver_key=3), MpTcpRst(reason=6)]),
]  # fmt: skip


def tcp_packets() -> list[bytes]:
    """One packet per option set, per direction and IP version, with and without payload."""
    out = []
    for src, dst in (V4, V6):
        for i, (flags, options) in enumerate(OPTION_SETS):
            raw = wire.options_bytes([wire.mss(1400), *options]) if "S" in flags else (
                wire.options_bytes([wire.timestamps(1, 2), *options]))  # fmt: skip
            payload = PAYLOAD if "P" in flags else b""
            for a, b in ((src, dst), (dst, src)):
                seg = wire.Segment(a, b, 40000 + i, 80, 1000 + i, 77, flags, options=raw,
                                   payload=payload)  # fmt: skip
                out.append(wire.packet(seg, 64, 100 + i, 0))
    return out


def icmp_errors(packets: list[bytes]) -> list[bytes]:
    """ICMP / ICMPv6 time-exceeded messages (without the outer IP header, as a raw socket
    reads them) quoting the given packets whole, cut to 8 bytes and with RFC 4884 lengths."""
    out = []
    for packet in packets:
        v6 = packet[0] >> 4 == 6
        kind = 3 if v6 else 11
        for quote in (packet, packet[: (40 if v6 else 20) + 8]):
            out.append(struct.pack("!BBHI", kind, 0, 0, 0) + quote)
        words = (len(packet) + 7) // 8 if v6 else (len(packet) + 3) // 4
        padded = packet.ljust(words * (8 if v6 else 4), b"\0")
        header = struct.pack("!BBHBBH", kind, 0, 0, words, 0, 0) if v6 else struct.pack(
            "!BBHxBH", kind, 0, 0, words, 0)  # fmt: skip
        out.append(header + padded + b"\x20\x00\x00\x00")  # an extension header follows
    return out


def captures() -> list[bytes]:
    """Recorded pcap files, and a pcapng file made from one of them."""
    files = [p.read_bytes() for p in sorted(DATA.glob("*.pcap"))][:2]
    return [*files, pcapng_of(files[0])]


def pcapng_of(pcap: bytes) -> bytes:
    """The same frames as a pcapng file (SHB, IDB, EPBs)."""
    linktype = struct.unpack_from("<I", pcap, 20)[0]
    shb_body = struct.pack("<IHHq", 0x1A2B3C4D, 1, 0, -1)
    out = [_block(0x0A0D0D0A, shb_body), _block(1, struct.pack("<HHI", linktype, 0, 0))]
    pos = 24
    while pos + 16 <= len(pcap):
        sec, usec, caplen, length = struct.unpack_from("<IIII", pcap, pos)
        data = pcap[pos + 16 : pos + 16 + caplen]
        stamp = sec * 1_000_000 + usec
        body = struct.pack("<IIIII", 0, stamp >> 32, stamp & 0xFFFFFFFF, caplen, length)
        out.append(_block(6, body + data.ljust((caplen + 3) & ~3, b"\0")))
        pos += 16 + caplen
    return b"".join(out)


def _block(kind: int, body: bytes) -> bytes:
    length = 12 + len(body)
    return struct.pack("<II", kind, length) + body + struct.pack("<I", length)
