"""A raw reader for pcap and pcapng files: frames as bytes, no dissection, streamed.

Reading bytes and parsing headers ourselves (see ``headers``) is what makes decoding a large
capture fast; scapy's per-packet dissection is two orders of magnitude slower. The reader
streams (constant memory whatever the file's size), refuses what is not a regular file
before reading it (a FIFO would hang, /dev/zero would never end), rejects a bad header
before reading further, and reports every malformed or cut block as a CaptureError.
"""

from __future__ import annotations

import os
import stat
import struct
from collections.abc import Iterator
from dataclasses import dataclass
from typing import BinaryIO

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
MAX_RECORD = 16 << 20  # larger than any frame a capture tool writes: a corrupt length


@dataclass(frozen=True, slots=True)
class Frame:
    number: int  # 1-based, as Wireshark counts
    time: float  # seconds since the epoch
    linktype: int
    data: bytes


def open_capture(path: str | os.PathLike) -> BinaryIO:
    """The file opened for reading, or one sentence on why it cannot be a capture."""
    name = os.fspath(path)
    try:
        info = os.stat(name)
    except FileNotFoundError:
        raise CaptureError(f"{name}: no such file") from None
    except OSError as e:
        raise CaptureError(f"{name} cannot be read: {e.strerror}") from None
    if stat.S_ISDIR(info.st_mode):
        raise CaptureError(f"{name} is a directory, not a capture file")
    if not stat.S_ISREG(info.st_mode):
        raise CaptureError(f"{name} is not a regular file (a pipe or a device): save it first")
    try:
        return open(name, "rb")
    except OSError as e:
        raise CaptureError(f"{name} cannot be read: {e.strerror}") from None


def read_frames(path: str | os.PathLike) -> Iterator[Frame]:
    """Every frame of a pcap or pcapng file; CaptureError for anything else. The header is
    checked now; the frames are read as they are iterated."""
    stream = open_capture(path)
    try:
        frames = frames_from(stream, os.fspath(path))
    except BaseException:
        stream.close()
        raise
    return _closing(frames, stream)


def _closing(frames: Iterator[Frame], stream: BinaryIO) -> Iterator[Frame]:
    with stream:
        yield from frames


def frames_from(stream: BinaryIO, name: str) -> Iterator[Frame]:
    """Frames from an open binary stream; the header is checked before this returns."""
    try:
        head = stream.read(24)
    except OSError as e:
        raise CaptureError(f"{name} cannot be read: {e.strerror}") from None
    if not head:
        raise CaptureError(f"{name} is empty, not a capture file")
    if head[:4] in _PCAP_MAGIC:
        if len(head) < 24:
            raise CaptureError(f"{name} is truncated inside the pcap file header")
        return _pcap_frames(stream, head, name)
    if head[:4] == _PCAPNG_SHB:
        return _pcapng_frames(stream, head, name)
    raise CaptureError(f"{name} is not a pcap or pcapng file (unknown magic {head[:4].hex()})")


def _read(stream: BinaryIO, size: int, name: str, what: str) -> bytes:
    data = stream.read(size)
    if len(data) < size:
        raise CaptureError(f"{name} is truncated in {what}")
    return data


def _pcap_frames(stream: BinaryIO, head: bytes, name: str) -> Iterator[Frame]:
    endian, unit = _PCAP_MAGIC[head[:4]]
    linktype = struct.unpack_from(endian + "I", head, 20)[0] & 0x0FFFFFFF
    record = struct.Struct(endian + "IIII")
    number = 0
    while True:
        header = stream.read(16)
        if not header:
            return
        number += 1
        if len(header) < 16:
            raise CaptureError(f"{name} is truncated in the header of packet {number}")
        sec, frac, caplen, _ = record.unpack(header)
        if caplen > MAX_RECORD:
            raise CaptureError(f"{name} is corrupt: packet {number} claims {caplen} bytes")
        data = _read(stream, caplen, name, f"packet {number}")
        yield Frame(number, sec + frac * unit, linktype, data)


def _pcapng_frames(stream: BinaryIO, head: bytes, name: str) -> Iterator[Frame]:
    number, offset = 0, 0
    endian = "<"
    interfaces: list[tuple[int, float]] = []  # (linktype, seconds per timestamp unit)
    pending = head  # bytes read ahead of the next block
    while True:
        start = pending + stream.read(max(0, 12 - len(pending)))
        if not start:
            return
        if len(start) < 12:
            raise CaptureError(f"{name} is truncated in a pcapng block header at byte {offset}")
        if start[:4] == _PCAPNG_SHB:
            bom = start[8:12]
            if bom == b"\x4d\x3c\x2b\x1a":
                endian = "<"
            elif bom == b"\x1a\x2b\x3c\x4d":
                endian = ">"
            else:
                raise CaptureError(f"{name} has a pcapng section with a bad byte-order magic")
            interfaces = []
        btype, blen = struct.unpack_from(endian + "II", start, 0)
        if blen < 12 or blen % 4 or blen > MAX_RECORD:
            raise CaptureError(f"{name} is truncated or corrupt in a pcapng block at byte {offset}")
        rest = blen - len(start)
        if rest <= 0:  # the read-ahead holds this whole (short) block and more
            block, pending = start[:blen], start[blen:]
        else:
            block = start + _read(stream, rest, name, f"the pcapng block at byte {offset}")
            pending = b""
        body = block[8:-4]
        offset += blen
        if btype == 1:  # interface description
            if len(body) < 8:
                raise CaptureError(f"{name} has a corrupt interface block at byte {offset - blen}")
            linktype = struct.unpack_from(endian + "H", body, 0)[0]
            interfaces.append((linktype, _pcapng_tsresol(body[8:], endian)))
        elif btype in (6, 3):  # enhanced / simple packet
            number += 1
            if btype == 6:
                if len(body) < 20:
                    raise CaptureError(f"{name} has a corrupt packet block (packet {number})")
                iface, ts_hi, ts_lo, caplen, _ = struct.unpack_from(endian + "IIIII", body, 0)
                at = 20
            else:
                if len(body) < 4:
                    raise CaptureError(f"{name} has a corrupt packet block (packet {number})")
                iface, ts_hi, ts_lo, at = 0, 0, 0, 4
                caplen = min(struct.unpack_from(endian + "I", body, 0)[0], len(body) - 4)
            if iface >= len(interfaces) or at + caplen > len(body):
                raise CaptureError(f"{name} has a corrupt packet block (packet {number})")
            linktype, unit = interfaces[iface]
            stamp = ((ts_hi << 32) | ts_lo) * unit
            yield Frame(number, stamp, linktype, body[at : at + caplen])


def _pcapng_tsresol(options: bytes, endian: str) -> float:
    pos = 0
    while pos + 4 <= len(options):
        code, length = struct.unpack_from(endian + "HH", options, pos)
        if code == 0:
            break
        if code == 9 and length >= 1 and pos + 4 < len(options):
            raw = options[pos + 4]
            return 2.0 ** -(raw & 0x7F) if raw & 0x80 else 10.0**-raw
        pos += 4 + ((length + 3) & ~3)
    return 1e-6


def write_raw_ip(path: str | os.PathLike, frames: list[tuple[float, bytes]]) -> None:
    """A pcap file of whole IP packets (LINKTYPE_RAW: IPv4 and IPv6 alike), microsecond
    stamps: what tshark and Wireshark read without any link layer."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, LINKTYPE_RAW))
        for stamp, data in frames:
            seconds = int(stamp)
            micros = min(999_999, round((stamp - seconds) * 1e6))
            f.write(struct.pack("<IIII", seconds, micros, len(data), len(data)))
            f.write(data)
