"""Recompute the MPTCP crypto of a capture and compare it with what the endpoints sent.

From the keys of each MP_CAPABLE handshake: the IDSN (first data sequence number in each
direction), the join tokens, the join HMACs, the ADD_ADDR HMACs, and the DSS checksums of
every mapping whose bytes were captured. A check that fails points at a codec or crypto bug,
or at a middlebox that changed what it should not have.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterable
from dataclasses import dataclass

from mbtest.mptcp import crypto
from mbtest.mptcp.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
)
from mbtest.observe.decode import Endpoint, PacketRecord

MASK64 = (1 << 64) - 1
MASK32 = (1 << 32) - 1


@dataclass(frozen=True)
class Check:
    kind: str  # idsn, join-token, join-*-hmac, add-addr-hmac, fastclose-key, dss-checksum
    frame: int
    computed: str
    sent: str

    @property
    def ok(self) -> bool:
        return self.computed == self.sent


@dataclass
class _Subflow:
    keys: dict[Endpoint, int]  # endpoint -> that side's MPTCP key


@dataclass
class _Join:
    syn: MpJoinSyn
    initiator: Endpoint
    synack: MpJoinSynAck | None = None
    synack_frame: int = 0


def verify(records: Iterable[PacketRecord]) -> list[Check]:
    """Every check that the captured packets allow (records need their segments)."""
    records = list(records)
    subflows: dict[frozenset[Endpoint], _Subflow] = {}
    tokens: dict[int, tuple[int, int]] = {}  # token -> (its key, the peer's key)
    joins: dict[frozenset[Endpoint], _Join] = {}
    checks: list[Check] = []
    first_dsn_seen: set[tuple[int, int]] = set()
    mappings: list[tuple[int, frozenset[Endpoint], Endpoint, int, int, int, int, bool]] = []
    isn: dict[Endpoint, int] = {}  # sender -> its SYN's sequence number
    stream: dict[Endpoint, dict[int, bytes]] = {}  # sender -> relative seq -> payload

    for r in records:
        seg, key = r.segment, frozenset((r.src, r.dst))
        if seg is None:
            continue
        for opt in r.options:
            if isinstance(opt, MpCapable) and opt.receiver_key is not None:
                keys = {r.src: opt.sender_key, r.dst: opt.receiver_key}
                sub = subflows.setdefault(key, _Subflow(keys))
                sub.keys.update(keys)
                tokens[crypto.token(opt.sender_key)] = (opt.sender_key, opt.receiver_key)
                tokens[crypto.token(opt.receiver_key)] = (opt.receiver_key, opt.sender_key)
                if opt.data_length is not None and opt.checksum is not None:
                    dsn = (crypto.idsn(opt.sender_key) + 1) & MASK64
                    mappings.append(
                        (r.frame, key, r.src, dsn, 1, opt.data_length, opt.checksum, False)
                    )
            elif isinstance(opt, MpJoinSyn):
                joins[key] = _Join(opt, r.src)
                found = tokens.get(opt.token)
                checks.append(
                    Check(
                        "join-token",
                        r.frame,
                        "a token of a key seen in a handshake",
                        "a token of a key seen in a handshake"
                        if found
                        else f"unknown 0x{opt.token:08x}",
                    )
                )
                if found:
                    receiver_key, initiator_key = found
                    subflows[key] = _Subflow({r.src: initiator_key, r.dst: receiver_key})
            elif isinstance(opt, MpJoinSynAck) and key in joins:
                joins[key].synack, joins[key].synack_frame = opt, r.frame
            elif isinstance(opt, MpJoinAck) and key in joins and key in subflows:
                join, keys = joins[key], subflows[key].keys
                if join.synack is None:
                    continue
                a, b = join.initiator, r.dst
                expected_b = crypto.join_synack_hmac(
                    keys[b], keys[a], join.synack.nonce, join.syn.nonce
                )
                checks.append(
                    Check(
                        "join-synack-hmac",
                        join.synack_frame,
                        f"{expected_b:016x}",
                        f"{join.synack.hmac:016x}",
                    )
                )
                expected_a = crypto.join_ack_hmac(
                    keys[a], keys[b], join.syn.nonce, join.synack.nonce
                )
                checks.append(Check("join-ack-hmac", r.frame, expected_a.hex(), opt.hmac.hex()))
            elif isinstance(opt, AddAddr) and opt.hmac is not None and key in subflows:
                keys = subflows[key].keys
                expected = crypto.add_addr_hmac(
                    keys[r.src], keys[r.dst], opt.address_id, opt.address, opt.port
                )
                checks.append(
                    Check("add-addr-hmac", r.frame, f"{expected:016x}", f"{opt.hmac:016x}")
                )
            elif isinstance(opt, MpFastclose) and key in subflows:
                receiver_key = subflows[key].keys.get(r.dst)
                if receiver_key is not None:
                    checks.append(
                        Check(
                            "fastclose-key",
                            r.frame,
                            f"{receiver_key:016x}",
                            f"{opt.receiver_key:016x}",
                        )
                    )
            elif isinstance(opt, Dss) and opt.has_mapping and key in subflows:
                sender_key = subflows[key].keys.get(r.src)
                conn = (min(subflows[key].keys.values()), sender_key)
                if sender_key is not None and conn not in first_dsn_seen and opt.data_length:
                    first_dsn_seen.add(conn)
                    mask = MASK64 if opt.dsn_8_bytes else MASK32
                    expected = (crypto.idsn(sender_key) + 1) & mask
                    checks.append(Check("idsn", r.frame, f"{expected:x}", f"{opt.dsn:x}"))
                if opt.checksum is not None and opt.data_length:
                    mappings.append(
                        (
                            r.frame,
                            key,
                            r.src,
                            opt.dsn,
                            opt.subflow_seq,
                            opt.data_length,
                            opt.checksum,
                            opt.data_fin,
                        )
                    )
        if seg.syn:
            isn[r.src] = seg.seq
        elif seg.payload and r.src in isn:
            rel = (seg.seq - isn[r.src]) & MASK32
            stream.setdefault(r.src, {})[rel] = seg.payload

    seen_mappings = set()
    for frame, key, sender, dsn, ssn, length, sent, data_fin in mappings:
        if (sender, dsn, ssn, length) in seen_mappings:
            continue  # every segment of a multi-segment mapping repeats its option
        seen_mappings.add((sender, dsn, ssn, length))
        sub = subflows[key]
        payload_len = length - 1 if data_fin else length
        payload = _stream_bytes(stream.get(sender, {}), ssn, payload_len)
        if payload is None:
            continue  # not every byte of the mapping was captured
        if sub.keys.get(sender) is not None and dsn.bit_length() <= 32:
            dsn = _expand_dsn(dsn, crypto.idsn(sub.keys[sender]))
        computed = crypto.dss_checksum(dsn, ssn, length, payload)
        checks.append(Check("dss-checksum", frame, f"{computed:04x}", f"{sent:04x}"))
    return checks


def _expand_dsn(dsn32: int, idsn: int) -> int:
    """A 32-bit DSN as the 64-bit value the checksum covers (near the sender's IDSN)."""
    candidate = (idsn & ~MASK32) | dsn32
    if candidate < idsn and idsn - candidate > (1 << 31):
        candidate += 1 << 32
    return candidate & MASK64


def _stream_bytes(chunks: dict[int, bytes], start: int, length: int) -> bytes | None:
    """Bytes [start, start+length) of a subflow's stream from captured segments, if complete."""
    starts = sorted(chunks)
    out = bytearray()
    while len(out) < length:
        pos = start + len(out)
        i = bisect.bisect_right(starts, pos) - 1
        if i < 0 or pos >= starts[i] + len(chunks[starts[i]]):
            return None
        s = starts[i]
        out += chunks[s][pos - s : pos - s + length - len(out)]
    return bytes(out)
