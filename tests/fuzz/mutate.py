"""Mutations that reach deep: random bytes, but mostly the length and offset fields parsers
trust (IP header and total lengths, IPv6 payload length and next header, the TCP data
offset, TCP option lengths, ICMP lengths, capture record and block lengths)."""

from __future__ import annotations

import random
import struct

INTERESTING = (0, 1, 2, 3, 4, 5, 6, 7, 8, 0x0F, 0x10, 0x1E, 0x2C, 0x3A, 0x40, 0x7F, 0x80, 0xFE,
               0xFF)  # fmt: skip


def _ip_tcp_fields(data: bytes) -> list[int]:
    """Offsets of the fields parsers trust in an IP/TCP packet (best effort)."""
    if not data:
        return []
    out = [0]
    if data[0] >> 4 == 4 and len(data) >= 20:
        ihl = (data[0] & 0x0F) * 4
        out += [2, 3, 6, 9]
        tcp = ihl
    else:
        out += [4, 5, 6]
        tcp = 40
    out += [tcp + 12, tcp + 13]
    # every option's kind and length byte
    pos = tcp + 20
    end = min(len(data), tcp + ((data[tcp + 12] >> 4) * 4 if len(data) > tcp + 12 else 20))
    while pos < end:
        out += [pos, pos + 1, pos + 2]
        if data[pos] in (0, 1):
            pos += 1
            continue
        if pos + 1 >= len(data) or data[pos + 1] < 2:
            break
        pos += data[pos + 1]
    return [o for o in out if o < len(data)]


def packet(rng: random.Random, seed: bytes, others: list[bytes]) -> bytes:
    """One mutation (sometimes several) of a well-formed packet."""
    data = bytearray(seed)
    for _ in range(rng.choice((1, 1, 1, 2, 3))):
        op = rng.random()
        fields = _ip_tcp_fields(bytes(data))
        if op < 0.35 and fields:
            data[rng.choice(fields)] = rng.choice(INTERESTING) if rng.random() < 0.7 else (
                rng.randrange(256))  # fmt: skip
        elif op < 0.55 and data:
            data[rng.randrange(len(data))] = rng.randrange(256)
        elif op < 0.70:
            del data[rng.randrange(len(data) + 1) :]
        elif op < 0.78:
            data += rng.randbytes(rng.randrange(1, 64))
        elif op < 0.86 and data:
            at = rng.randrange(len(data))
            if rng.random() < 0.5:
                del data[at : at + rng.randrange(1, 9)]
            else:
                data[at:at] = rng.randbytes(rng.randrange(1, 9))
        elif op < 0.93 and others:
            other = rng.choice(others)
            cut = rng.randrange(min(len(data), len(other)) + 1)
            data = data[:cut] + other[cut:]
        else:
            data = bytearray(rng.randbytes(rng.randrange(0, 120)))
    return bytes(data)


def capture(rng: random.Random, seed: bytes) -> bytes:
    """One mutation of a capture file: its record or block lengths, or its bytes."""
    data = bytearray(seed)
    op = rng.random()
    if op < 0.4 and len(data) > 32:
        at = _length_field(rng, bytes(data))
        value = rng.choice((0, 1, 3, 4, 8, 11, 12, 13, 16, 20, 0xFFFF, 0xFFFFFFFF, 0x7FFFFFFF))
        if rng.random() < 0.5:
            value = rng.randrange(0, 2048)
        data[at : at + 4] = struct.pack("<I", value & 0xFFFFFFFF)[: len(data) - at]
    elif op < 0.6:
        del data[rng.randrange(len(data) + 1) :]
    elif op < 0.8:
        for _ in range(rng.randrange(1, 8)):
            data[rng.randrange(len(data))] = rng.randrange(256)
    elif op < 0.9:
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randrange(1, 40))
    else:
        data[: rng.randrange(1, 40)] = b""
    return bytes(data)


def _length_field(rng: random.Random, data: bytes) -> int:
    """The offset of a record's or block's length field, found by walking the file."""
    if data[:4] == b"\x0a\x0d\x0d\x0a":
        spots, pos = [], 0
        while pos + 8 <= len(data):
            spots += [pos + 4, pos + 8 + 12, pos + 8]  # block length, caplen, first body word
            length = struct.unpack_from("<I", data, pos + 4)[0]
            if length < 12:
                break
            pos += length
        return rng.choice(spots) if spots else 4
    spots, pos = [20], 24
    while pos + 16 <= len(data):
        spots += [pos + 8, pos + 12]  # caplen, original length
        pos += 16 + struct.unpack_from("<I", data, pos + 8)[0]
    return rng.choice(spots)
