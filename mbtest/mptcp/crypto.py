"""MPTCP crypto (RFC 8684 §3.1, §3.2, §3.3.1, §3.4.1): tokens, IDSNs, HMACs, DSS checksum.

Keys, tokens and nonces are unsigned integers as they appear in the options (network byte
order on the wire); HMACs are returned in the form the option carries them.
"""

from __future__ import annotations

import hashlib
import hmac as _hmac
import ipaddress
import struct

from mbtest.mptcp.options import IPAddress


def _key_bytes(key: int) -> bytes:
    return key.to_bytes(8, "big")


def _digest(key: int, version: int) -> bytes:
    algo = hashlib.sha1 if version == 0 else hashlib.sha256
    return algo(_key_bytes(key)).digest()


def token(key: int, version: int = 1) -> int:
    """The connection token: the most significant 32 bits of SHA-256(key) (SHA-1 in v0)."""
    return int.from_bytes(_digest(key, version)[:4], "big")


def idsn(key: int, version: int = 1) -> int:
    """The initial data sequence number: the least significant 64 bits of the key's hash."""
    return int.from_bytes(_digest(key, version)[-8:], "big")


def join_hmac(
    key_self: int, key_peer: int, nonce_self: int, nonce_peer: int, version: int = 1
) -> bytes:
    """Full MP_JOIN HMAC computed by one side: HMAC(Key-self ‖ Key-peer, R-self ‖ R-peer)."""
    algo = hashlib.sha1 if version == 0 else hashlib.sha256
    msg = struct.pack("!II", nonce_self, nonce_peer)
    return _hmac.new(_key_bytes(key_self) + _key_bytes(key_peer), msg, algo).digest()


def join_synack_hmac(
    key_listener: int, key_initiator: int, nonce_listener: int, nonce_initiator: int
) -> int:
    """The 64-bit truncated HMAC-B that the SYN/ACK of a join carries."""
    full = join_hmac(key_listener, key_initiator, nonce_listener, nonce_initiator)
    return int.from_bytes(full[:8], "big")


def join_ack_hmac(
    key_initiator: int, key_listener: int, nonce_initiator: int, nonce_listener: int
) -> bytes:
    """The 160-bit HMAC-A that the third ACK of a join carries."""
    return join_hmac(key_initiator, key_listener, nonce_initiator, nonce_listener)[:20]


def add_addr_hmac(
    key_sender: int,
    key_receiver: int,
    address_id: int,
    address: IPAddress | str,
    port: int | None = None,
) -> int:
    """The rightmost 64 bits of HMAC(Key-sender ‖ Key-receiver, id ‖ address ‖ port)."""
    addr = ipaddress.ip_address(address)
    msg = bytes((address_id,)) + addr.packed + (port or 0).to_bytes(2, "big")
    full = _hmac.new(
        _key_bytes(key_sender) + _key_bytes(key_receiver), msg, hashlib.sha256
    ).digest()
    return int.from_bytes(full[-8:], "big")


def ones_complement_sum(data: bytes, start: int = 0) -> int:
    """RFC 1071 16-bit one's complement sum (not yet complemented)."""
    if len(data) % 2:
        data = bytes(data) + b"\0"
    total = start + sum(struct.unpack(f"!{len(data) // 2}H", data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return total


def dss_checksum(dsn: int, subflow_seq: int, data_length: int, payload: bytes) -> int:
    """The DSS checksum of a mapping: over DSN (64), subflow seq (32), length (16), 0 (16), data."""
    pseudo = struct.pack("!QIHH", dsn & (2**64 - 1), subflow_seq, data_length, 0)
    total = ones_complement_sum(pseudo + bytes(payload))
    return (~total) & 0xFFFF
