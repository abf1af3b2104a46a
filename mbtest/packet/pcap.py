"""A raw reader for pcap and pcapng files: frames as bytes, no dissection.

Reading bytes and parsing headers ourselves (see ``headers``) is what makes decoding a large
capture fast; scapy's per-packet dissection is two orders of magnitude slower.
"""

from __future__ import annotations

import os
import struct
from collections.abc import Iterator
from dataclasses import dataclass

from mbtest.errors import CaptureError

LINKTYPE_NULL = 0
LINKTYPE_ETHERNET = 1
LINKTYPE_RAW = 101
LINKTYPE_LINUX_SLL = 113
LINKTYPE_IPV4 = 228
LINKTYPE_IPV6 = 229
LINKTYPE_LINUX_SLL2 = 276

_PCAP_MAGIC = {
    b"\xd4\xc3\xb2\xa1": ("<", 1e-6),
    b"\xa1\xb2\xc3\xd4": (">", 1e-6),
    b"\x4d\x3c\xb2\xa1": ("<", 1e-9),
    b"\xa1\xb2\x3c\x4d": (">", 1e-9),
}
_PCAPNG_SHB = b"\x0a\x0d\x0d\x0a"


@dataclass(frozen=True, slots=True)
class Frame:
    number: int  # 1-based, as Wireshark counts
    time: float  # seconds since the epoch
    linktype: int
    data: bytes


def read_frames(path: str | os.PathLike) -> Iterator[Frame]:
    """Every frame of a pcap or pcapng file; CaptureError for anything else."""
    data = _read_whole(path)
    name = os.fspath(path)
    if data[:4] in _PCAP_MAGIC:
        return _pcap_frames(data, name)
    if data[:4] == _PCAPNG_SHB:
        return _pcapng_frames(data, name)
    raise CaptureError(f"{name} is not a pcap or pcapng file (unknown magic {data[:4].hex()})")


def _read_whole(path: str | os.PathLike) -> bytes:
    name = os.fspath(path)
    try:
        with open(path, "rb") as f:
            data = f.read()
    except FileNotFoundError:
        raise CaptureError(f"{name}: no such file") from None
    except IsADirectoryError:
        raise CaptureError(f"{name} is a directory, not a capture file") from None
    except OSError as e:
        raise CaptureError(f"{name} cannot be read: {e.strerror}") from None
    if not data:
        raise CaptureError(f"{name} is empty, not a capture file")
    if len(data) < 24 and data[:4] in _PCAP_MAGIC:
        raise CaptureError(f"{name} is truncated inside the pcap file header")
    return data


def _pcap_frames(data: bytes, name: str) -> Iterator[Frame]:
    endian, unit = _PCAP_MAGIC[data[:4]]
    linktype = struct.unpack_from(endian + "I", data, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    pos, number, end = 24, 0, len(data)
    while pos < end:
        number += 1
        if pos + 16 > end:
            raise CaptureError(f"{name} is truncated in the header of packet {number}")
        sec, frac, caplen, _ = record.unpack_from(data, pos)
        pos += 16
        if pos + caplen > end:
            raise CaptureError(f"{name} is truncated in packet {number}")
        yield Frame(number, sec + frac * unit, linktype, data[pos : pos + caplen])
        pos += caplen


def _pcapng_frames(data: bytes, name: str) -> Iterator[Frame]:
    pos, number, end = 0, 0, len(data)
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    while pos < end:
        if pos + 12 > end:
            raise CaptureError(f"{name} is truncated in a pcapng block header")
        if data[pos : pos + 4] == _PCAPNG_SHB:
            bom = data[pos + 8 : pos + 12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise CaptureError(f"{name} has a pcapng section with a bad byte-order magic")
            interfaces = []
        btype, blen = struct.unpack_from(endian + "II", data, pos)
        if blen < 12 or blen % 4 or pos + blen > end:
            raise CaptureError(f"{name} is truncated or corrupt in a pcapng block at byte {pos}")
        body = data[pos + 8 : pos + blen - 4]
        pos += blen
        if btype == 1:  # interface description
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            interfaces.append((linktype, _pcapng_tsresol(body[8:], endian)))
        elif btype in (6, 3):  # enhanced / simple packet
            number += 1
            if btype == 6:
                iface, ts_hi, ts_lo, caplen, _ = struct.unpack_from(endian + "IIIII", body, 0)
                offset = 20
            else:
                iface, ts_hi, ts_lo, offset = 0, 0, 0, 4
                caplen = min(struct.unpack_from(endian + "I", body, 0)[0], len(body) - 4)
            if iface >= len(interfaces) or offset + caplen > len(body):
                raise CaptureError(f"{name} has a corrupt packet block (packet {number})")
            linktype, unit = interfaces[iface]
            stamp = ((ts_hi << 32) | ts_lo) * unit
            yield Frame(number, stamp, linktype, body[offset : offset + caplen])


def _pcapng_tsresol(options: bytes, endian: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(endian + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1:
            raw = options[pos + 4]
            return 2.0 ** -(raw & 0x7F) if raw & 0x80 else 10.0**-raw
        pos += 4 + ((length + 3) & ~3)
    return 1e-6
