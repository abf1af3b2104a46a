"""MPTCP option codec (TCP option kind 30, RFC 8684 §3 and RFC 6824 for version 0).

Pure functions over bytes: ``decode`` turns one whole option (kind, length, value) into a
frozen dataclass and ``encode`` turns it back, so that ``encode(decode(b)) == b`` for every
well-formed option. Reserved bits are kept in a ``reserved`` field: strict decoding (the
default) rejects them as the RFC's senders must, lenient decoding keeps them so that what a
middlebox did to an option can still be shown and re-encoded byte for byte.
"""

from __future__ import annotations

import enum
import ipaddress
import struct
from dataclasses import dataclass
from typing import ClassVar

from mbtest.errors import CodecError

KIND = 30

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
_ANY_V4 = ipaddress.IPv4Address(0)


class Subtype(enum.IntEnum):
    MP_CAPABLE = 0x0
    MP_JOIN = 0x1
    DSS = 0x2
    ADD_ADDR = 0x3
    REMOVE_ADDR = 0x4
    MP_PRIO = 0x5
    MP_FAIL = 0x6
    MP_FASTCLOSE = 0x7
    MP_TCPRST = 0x8
    MP_EXPERIMENTAL = 0xF


class RstReason(enum.IntEnum):
    """MP_TCPRST reason codes (RFC 8684 §3.6)."""

    UNSPECIFIED = 0
    MPTCP_SPECIFIC = 1
    LACK_OF_RESOURCES = 2
    ADMINISTRATIVELY_PROHIBITED = 3
    TOO_MUCH_OUTSTANDING_DATA = 4
    UNACCEPTABLE_PERFORMANCE = 5
    MIDDLEBOX_INTERFERENCE = 6


def _check_uint(name: str, value: int, bits: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value < (1 << bits):
        raise CodecError(f"{name} must be an unsigned {bits}-bit integer, got {value!r}")


def _header(subtype: int, nibble: int, length: int) -> bytes:
    return bytes((KIND, length, (subtype << 4) | nibble))


class MptcpOption:
    """Common base of every option dataclass."""

    SUBTYPE: ClassVar[int]

    @property
    def name(self) -> str:
        return type(self).__name__

    def encode(self) -> bytes:  # pragma: no cover - every subclass overrides
        raise NotImplementedError

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MptcpOption:  # pragma: no cover
        raise NotImplementedError


# --- MP_CAPABLE ---------------------------------------------------------------------------

_MPC_V1_LENGTHS = {4: 0, 12: 1, 20: 2, 22: 2, 24: 2}  # length -> number of keys
_MPC_V0_LENGTHS = {12: 1, 20: 2}


@dataclass(frozen=True)
class MpCapable(MptcpOption):
    """MP_CAPABLE: v1 lengths 4 (SYN), 12 (SYN/ACK), 20 (ACK), 22/24 (first data); v0 12/20."""

    SUBTYPE: ClassVar[int] = Subtype.MP_CAPABLE
    version: int = 1
    checksum_required: bool = False  # flag A
    extensibility: bool = False  # flag B
    no_source_subflows: bool = False  # flag C
    unassigned_flags: int = 0  # flags D, E, F, G (crypto negotiation, none assigned)
    hmac_sha256: bool = True  # flag H (HMAC-SHA1 in version 0)
    sender_key: int | None = None
    receiver_key: int | None = None
    data_length: int | None = None
    checksum: int | None = None

    @property
    def flags(self) -> int:
        return (
            (self.checksum_required << 7)
            | (self.extensibility << 6)
            | (self.no_source_subflows << 5)
            | (self.unassigned_flags << 1)
            | int(self.hmac_sha256)
        )

    def encode(self) -> bytes:
        _check_uint("MP_CAPABLE version", self.version, 4)
        _check_uint("MP_CAPABLE unassigned flags", self.unassigned_flags, 4)
        keys = [k for k in (self.sender_key, self.receiver_key) if k is not None]
        if self.receiver_key is not None and self.sender_key is None:
            raise CodecError("MP_CAPABLE with a receiver's key needs the sender's key")
        if self.data_length is not None and len(keys) != 2:
            raise CodecError("MP_CAPABLE with a data-level length needs both keys")
        if self.checksum is not None and self.data_length is None:
            raise CodecError("MP_CAPABLE with a checksum needs a data-level length")
        out = bytearray(_header(self.SUBTYPE, self.version, 0))
        out.append(self.flags)
        for key in keys:
            _check_uint("MP_CAPABLE key", key, 64)
            out += key.to_bytes(8, "big")
        if self.data_length is not None:
            _check_uint("MP_CAPABLE data-level length", self.data_length, 16)
            out += self.data_length.to_bytes(2, "big")
        if self.checksum is not None:
            _check_uint("MP_CAPABLE checksum", self.checksum, 16)
            out += self.checksum.to_bytes(2, "big")
        lengths = _MPC_V0_LENGTHS if self.version == 0 else _MPC_V1_LENGTHS
        if len(out) not in lengths:
            raise CodecError(f"MP_CAPABLE version {self.version} has no {len(out)}-byte form")
        out[1] = len(out)
        return bytes(out)

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MpCapable:
        length = len(body) + 2
        version = body[0] & 0x0F
        lengths = _MPC_V0_LENGTHS if version == 0 else _MPC_V1_LENGTHS
        if length not in lengths:
            allowed = "/".join(str(n) for n in lengths)
            raise CodecError(
                f"MP_CAPABLE version {version} must be {allowed} bytes long, not {length}"
            )
        flags = body[1]
        nkeys = lengths[length]
        keys = [int.from_bytes(body[2 + 8 * i : 10 + 8 * i], "big") for i in range(nkeys)]
        data_length = int.from_bytes(body[18:20], "big") if length >= 22 else None
        checksum = int.from_bytes(body[20:22], "big") if length == 24 else None
        return cls(
            version=version,
            checksum_required=bool(flags & 0x80),
            extensibility=bool(flags & 0x40),
            no_source_subflows=bool(flags & 0x20),
            unassigned_flags=(flags >> 1) & 0x0F,
            hmac_sha256=bool(flags & 0x01),
            sender_key=keys[0] if nkeys >= 1 else None,
            receiver_key=keys[1] if nkeys == 2 else None,
            data_length=data_length,
            checksum=checksum,
        )


# --- MP_JOIN ------------------------------------------------------------------------------


@dataclass(frozen=True)
class MpJoinSyn(MptcpOption):
    """MP_JOIN on a SYN (12 bytes): backup flag, address id, receiver's token, nonce."""

    SUBTYPE: ClassVar[int] = Subtype.MP_JOIN
    LENGTH: ClassVar[int] = 12
    backup: bool = False
    address_id: int = 0
    token: int = 0
    nonce: int = 0
    reserved: int = 0  # 3 bits

    def encode(self) -> bytes:
        _check_uint("MP_JOIN reserved bits", self.reserved, 3)
        _check_uint("MP_JOIN address id", self.address_id, 8)
        _check_uint("MP_JOIN token", self.token, 32)
        _check_uint("MP_JOIN nonce", self.nonce, 32)
        nibble = (self.reserved << 1) | int(self.backup)
        return _header(self.SUBTYPE, nibble, self.LENGTH) + struct.pack(
            "!BII", self.address_id, self.token, self.nonce
        )

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MpJoinSyn:
        address_id, token, nonce = struct.unpack("!BII", body[1:])
        return cls(bool(body[0] & 1), address_id, token, nonce, (body[0] >> 1) & 0x7)


@dataclass(frozen=True)
class MpJoinSynAck(MptcpOption):
    """MP_JOIN on a SYN/ACK (16 bytes): backup, address id, truncated HMAC-B (64), nonce."""

    SUBTYPE: ClassVar[int] = Subtype.MP_JOIN
    LENGTH: ClassVar[int] = 16
    backup: bool = False
    address_id: int = 0
    hmac: int = 0
    nonce: int = 0
    reserved: int = 0  # 3 bits

    def encode(self) -> bytes:
        _check_uint("MP_JOIN reserved bits", self.reserved, 3)
        _check_uint("MP_JOIN address id", self.address_id, 8)
        _check_uint("MP_JOIN truncated HMAC", self.hmac, 64)
        _check_uint("MP_JOIN nonce", self.nonce, 32)
        nibble = (self.reserved << 1) | int(self.backup)
        return _header(self.SUBTYPE, nibble, self.LENGTH) + struct.pack(
            "!BQI", self.address_id, self.hmac, self.nonce
        )

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MpJoinSynAck:
        address_id, hmac, nonce = struct.unpack("!BQI", body[1:])
        return cls(bool(body[0] & 1), address_id, hmac, nonce, (body[0] >> 1) & 0x7)


@dataclass(frozen=True)
class MpJoinAck(MptcpOption):
    """MP_JOIN on the third ACK (24 bytes): the leftmost 160 bits of HMAC-A."""

    SUBTYPE: ClassVar[int] = Subtype.MP_JOIN
    LENGTH: ClassVar[int] = 24
    hmac: bytes = bytes(20)
    reserved: int = 0  # 12 bits

    def encode(self) -> bytes:
        _check_uint("MP_JOIN reserved bits", self.reserved, 12)
        if len(self.hmac) != 20:
            raise CodecError(f"MP_JOIN ACK HMAC must be 20 bytes, got {len(self.hmac)}")
        return (
            _header(self.SUBTYPE, self.reserved >> 8, self.LENGTH)
            + bytes((self.reserved & 0xFF,))
            + bytes(self.hmac)
        )

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MpJoinAck:
        return cls(bytes(body[2:22]), ((body[0] & 0x0F) << 8) | body[1])


_JOIN_BY_LENGTH: dict[int, type[MptcpOption]] = {12: MpJoinSyn, 16: MpJoinSynAck, 24: MpJoinAck}

# --- DSS ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Dss(MptcpOption):
    """DSS: optional Data ACK (4/8 bytes) and mapping (DSN 4/8, subflow seq, length, csum).

    ``dsn_8_bytes`` and ``data_ack_8_bytes`` are the m and a flags as sent; they are kept
    even without the field they describe so that any flag combination round-trips.
    """

    SUBTYPE: ClassVar[int] = Subtype.DSS
    data_fin: bool = False
    data_ack: int | None = None
    data_ack_8_bytes: bool = True
    dsn: int | None = None
    dsn_8_bytes: bool = True
    subflow_seq: int | None = None
    data_length: int | None = None
    checksum: int | None = None
    reserved: int = 0  # 7 bits

    @property
    def has_mapping(self) -> bool:
        return self.dsn is not None

    @property
    def infinite_mapping(self) -> bool:
        """A mapping with data-level length 0 (RFC 8684 §3.3.1): the fallback signal."""
        return self.dsn is not None and self.data_length == 0

    @property
    def flags(self) -> int:
        return (
            (self.data_fin << 4)
            | (self.dsn_8_bytes << 3)
            | ((self.dsn is not None) << 2)
            | (self.data_ack_8_bytes << 1)
            | int(self.data_ack is not None)
        )

    def encode(self) -> bytes:
        _check_uint("DSS reserved bits", self.reserved, 7)
        out = bytearray(_header(self.SUBTYPE, self.reserved >> 3, 0))
        out.append(((self.reserved & 0x7) << 5) | self.flags)
        if self.data_ack is not None:
            bits = 64 if self.data_ack_8_bytes else 32
            _check_uint("DSS Data ACK", self.data_ack, bits)
            out += self.data_ack.to_bytes(bits // 8, "big")
        if self.dsn is None:
            if (self.subflow_seq, self.data_length, self.checksum) != (None, None, None):
                raise CodecError("DSS subflow sequence, length or checksum needs a DSN")
        else:
            if self.subflow_seq is None or self.data_length is None:
                raise CodecError("a DSS mapping needs a subflow sequence number and a length")
            bits = 64 if self.dsn_8_bytes else 32
            _check_uint("DSS data sequence number", self.dsn, bits)
            _check_uint("DSS subflow sequence number", self.subflow_seq, 32)
            _check_uint("DSS data-level length", self.data_length, 16)
            out += self.dsn.to_bytes(bits // 8, "big")
            out += struct.pack("!IH", self.subflow_seq, self.data_length)
            if self.checksum is not None:
                _check_uint("DSS checksum", self.checksum, 16)
                out += self.checksum.to_bytes(2, "big")
        out[1] = len(out)
        return bytes(out)

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> Dss:
        length = len(body) + 2
        if length < 4:
            raise CodecError(f"DSS is truncated: {length} bytes, at least 4 needed")
        flags = body[1]
        reserved = ((body[0] & 0x0F) << 3) | (flags >> 5)
        fin, m, mapping, a, ack = (bool(flags & (1 << b)) for b in (4, 3, 2, 1, 0))
        ack_len = (8 if a else 4) if ack else 0
        map_len = ((8 if m else 4) + 6) if mapping else 0
        base = 4 + ack_len + map_len
        allowed = (base, base + 2) if mapping else (base,)
        if length not in allowed:
            expect = " or ".join(str(n) for n in allowed)
            raise CodecError(
                f"DSS with flags 0x{flags & 0x1F:02x} must be {expect} bytes, not {length}"
            )
        pos = 2
        data_ack = dsn = ssn = dll = csum = None
        if ack:
            data_ack = int.from_bytes(body[pos : pos + ack_len], "big")
            pos += ack_len
        if mapping:
            dsn_len = 8 if m else 4
            dsn = int.from_bytes(body[pos : pos + dsn_len], "big")
            ssn, dll = struct.unpack("!IH", body[pos + dsn_len : pos + dsn_len + 6])
            pos += dsn_len + 6
            if length == base + 2:
                csum = int.from_bytes(body[pos : pos + 2], "big")
        return cls(fin, data_ack, a, dsn, m, ssn, dll, csum, reserved)


# --- ADD_ADDR -----------------------------------------------------------------------------

# option length -> (IP version, has port, has HMAC)
_ADD_ADDR_LAYOUTS = {
    8: (4, False, False),
    10: (4, True, False),
    16: (4, False, True),
    18: (4, True, True),
    20: (6, False, False),
    22: (6, True, False),
    28: (6, False, True),
    30: (6, True, True),
}


@dataclass(frozen=True)
class AddAddr(MptcpOption):
    """ADD_ADDR: echo flag, address id, IPv4/IPv6 address, optional port, HMAC unless echo."""

    SUBTYPE: ClassVar[int] = Subtype.ADD_ADDR
    address: IPAddress = _ANY_V4
    address_id: int = 0
    port: int | None = None
    hmac: int | None = None
    echo: bool = False
    reserved: int = 0  # 3 bits

    def encode(self) -> bytes:
        _check_uint("ADD_ADDR reserved bits", self.reserved, 3)
        _check_uint("ADD_ADDR address id", self.address_id, 8)
        if not isinstance(self.address, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            raise CodecError(f"ADD_ADDR address must be an IP address, got {self.address!r}")
        out = bytearray(_header(self.SUBTYPE, (self.reserved << 1) | int(self.echo), 0))
        out.append(self.address_id)
        out += self.address.packed
        if self.port is not None:
            _check_uint("ADD_ADDR port", self.port, 16)
            out += self.port.to_bytes(2, "big")
        if self.hmac is not None:
            _check_uint("ADD_ADDR truncated HMAC", self.hmac, 64)
            out += self.hmac.to_bytes(8, "big")
        out[1] = len(out)
        return bytes(out)

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> AddAddr:
        length = len(body) + 2
        if length not in _ADD_ADDR_LAYOUTS:
            allowed = "/".join(str(n) for n in _ADD_ADDR_LAYOUTS)
            raise CodecError(f"ADD_ADDR must be {allowed} bytes long, not {length}")
        ipv, has_port, has_hmac = _ADD_ADDR_LAYOUTS[length]
        echo = bool(body[0] & 1)
        if strict and echo == has_hmac:
            what = "an echo carries no HMAC" if echo else "a non-echo ADD_ADDR needs an HMAC"
            raise CodecError(f"ADD_ADDR of {length} bytes with E={int(echo)}: {what}")
        alen = 4 if ipv == 4 else 16
        address = ipaddress.ip_address(bytes(body[2 : 2 + alen]))
        pos = 2 + alen
        port = hmac = None
        if has_port:
            port = int.from_bytes(body[pos : pos + 2], "big")
            pos += 2
        if has_hmac:
            hmac = int.from_bytes(body[pos : pos + 8], "big")
        return cls(address, body[1], port, hmac, echo, (body[0] >> 1) & 0x7)


# --- REMOVE_ADDR, MP_PRIO, MP_FAIL, MP_FASTCLOSE, MP_TCPRST ------------------------------


@dataclass(frozen=True)
class RemoveAddr(MptcpOption):
    """REMOVE_ADDR: one or more address ids (length 3 + n)."""

    SUBTYPE: ClassVar[int] = Subtype.REMOVE_ADDR
    address_ids: tuple[int, ...] = (0,)
    reserved: int = 0  # 4 bits

    def encode(self) -> bytes:
        _check_uint("REMOVE_ADDR reserved bits", self.reserved, 4)
        if not 1 <= len(self.address_ids) <= 252:
            raise CodecError("REMOVE_ADDR needs between 1 and 252 address ids")
        for aid in self.address_ids:
            _check_uint("REMOVE_ADDR address id", aid, 8)
        return _header(self.SUBTYPE, self.reserved, 3 + len(self.address_ids)) + bytes(
            self.address_ids
        )

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> RemoveAddr:
        if len(body) < 2:
            raise CodecError("REMOVE_ADDR must list at least one address id (length >= 4)")
        return cls(tuple(body[1:]), body[0] & 0x0F)


@dataclass(frozen=True)
class MpPrio(MptcpOption):
    """MP_PRIO: backup flag (length 3), plus an address id in version 0's 4-byte form."""

    SUBTYPE: ClassVar[int] = Subtype.MP_PRIO
    backup: bool = False
    address_id: int | None = None
    reserved: int = 0  # 3 bits

    def encode(self) -> bytes:
        _check_uint("MP_PRIO reserved bits", self.reserved, 3)
        tail = b""
        if self.address_id is not None:
            _check_uint("MP_PRIO address id", self.address_id, 8)
            tail = bytes((self.address_id,))
        nibble = (self.reserved << 1) | int(self.backup)
        return _header(self.SUBTYPE, nibble, 3 + len(tail)) + tail

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MpPrio:
        if len(body) not in (1, 2):
            raise CodecError(f"MP_PRIO must be 3 or 4 bytes long, not {len(body) + 2}")
        address_id = body[1] if len(body) == 2 else None
        return cls(bool(body[0] & 1), address_id, (body[0] >> 1) & 0x7)


@dataclass(frozen=True)
class MpFail(MptcpOption):
    """MP_FAIL (12 bytes): the 64-bit DSN of the start of the failed mapping."""

    SUBTYPE: ClassVar[int] = Subtype.MP_FAIL
    LENGTH: ClassVar[int] = 12
    dsn: int = 0
    reserved: int = 0  # 12 bits

    def encode(self) -> bytes:
        _check_uint("MP_FAIL reserved bits", self.reserved, 12)
        _check_uint("MP_FAIL data sequence number", self.dsn, 64)
        return (
            _header(self.SUBTYPE, self.reserved >> 8, self.LENGTH)
            + bytes((self.reserved & 0xFF,))
            + self.dsn.to_bytes(8, "big")
        )

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MpFail:
        return cls(int.from_bytes(body[2:10], "big"), ((body[0] & 0x0F) << 8) | body[1])


@dataclass(frozen=True)
class MpFastclose(MptcpOption):
    """MP_FASTCLOSE (12 bytes): the receiver's 64-bit key."""

    SUBTYPE: ClassVar[int] = Subtype.MP_FASTCLOSE
    LENGTH: ClassVar[int] = 12
    receiver_key: int = 0
    reserved: int = 0  # 12 bits

    def encode(self) -> bytes:
        _check_uint("MP_FASTCLOSE reserved bits", self.reserved, 12)
        _check_uint("MP_FASTCLOSE key", self.receiver_key, 64)
        return (
            _header(self.SUBTYPE, self.reserved >> 8, self.LENGTH)
            + bytes((self.reserved & 0xFF,))
            + self.receiver_key.to_bytes(8, "big")
        )

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MpFastclose:
        return cls(int.from_bytes(body[2:10], "big"), ((body[0] & 0x0F) << 8) | body[1])


@dataclass(frozen=True)
class MpTcpRst(MptcpOption):
    """MP_TCPRST (4 bytes): flags U V W (unassigned) and T (transient), and a reason code."""

    SUBTYPE: ClassVar[int] = Subtype.MP_TCPRST
    LENGTH: ClassVar[int] = 4
    reason: int = RstReason.UNSPECIFIED
    transient: bool = False
    unassigned_flags: int = 0  # U, V, W

    @property
    def reason_name(self) -> str:
        try:
            return RstReason(self.reason).name
        except ValueError:
            return f"UNKNOWN_{self.reason}"

    def encode(self) -> bytes:
        _check_uint("MP_TCPRST unassigned flags", self.unassigned_flags, 3)
        _check_uint("MP_TCPRST reason", self.reason, 8)
        nibble = (self.unassigned_flags << 1) | int(self.transient)
        return _header(self.SUBTYPE, nibble, self.LENGTH) + bytes((self.reason,))

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MpTcpRst:
        return cls(body[1], bool(body[0] & 1), (body[0] >> 1) & 0x7)


# --- opaque options -----------------------------------------------------------------------


@dataclass(frozen=True)
class MpExperimental(MptcpOption):
    """MP_EXPERIMENTAL (subtype 0xf): opaque; the low nibble and the rest kept as they are."""

    SUBTYPE: ClassVar[int] = Subtype.MP_EXPERIMENTAL
    nibble: int = 0
    data: bytes = b""

    def encode(self) -> bytes:
        return _encode_opaque(self.SUBTYPE, self.nibble, self.data)

    @classmethod
    def _from_value(cls, body: bytes, strict: bool) -> MpExperimental:
        return cls(body[0] & 0x0F, bytes(body[1:]))


@dataclass(frozen=True)
class UnknownOption(MptcpOption):
    """A subtype RFC 8684 does not assign (0x9-0xe), kept as raw bytes."""

    subtype: int = 0x9
    nibble: int = 0
    data: bytes = b""

    @property
    def name(self) -> str:
        return f"UNKNOWN_0x{self.subtype:x}"

    def encode(self) -> bytes:
        _check_uint("MPTCP subtype", self.subtype, 4)
        return _encode_opaque(self.subtype, self.nibble, self.data)


def _encode_opaque(subtype: int, nibble: int, data: bytes) -> bytes:
    _check_uint("low nibble", nibble, 4)
    if len(data) > 252:
        raise CodecError(f"MPTCP option data of {len(data)} bytes does not fit in 255")
    return _header(subtype, nibble, 3 + len(data)) + bytes(data)


# --- dispatch -----------------------------------------------------------------------------

_FIXED_LENGTHS = {
    Subtype.MP_FAIL: MpFail,
    Subtype.MP_FASTCLOSE: MpFastclose,
    Subtype.MP_TCPRST: MpTcpRst,
}
_BY_SUBTYPE: dict[int, type[MptcpOption]] = {
    Subtype.MP_CAPABLE: MpCapable,
    Subtype.DSS: Dss,
    Subtype.ADD_ADDR: AddAddr,
    Subtype.REMOVE_ADDR: RemoveAddr,
    Subtype.MP_PRIO: MpPrio,
    Subtype.MP_EXPERIMENTAL: MpExperimental,
    **_FIXED_LENGTHS,
}


def subtype_name(subtype: int) -> str:
    try:
        return Subtype(subtype).name
    except ValueError:
        return f"UNKNOWN_0x{subtype:x}"


def decode(data: bytes, strict: bool = True) -> MptcpOption:
    """Decode one whole option (kind 30, length, value) into its dataclass.

    Raises CodecError, and nothing else, for anything that is not a well-formed option.
    """
    if not isinstance(data, (bytes, bytearray, memoryview)):
        raise CodecError(f"an MPTCP option is bytes, not {type(data).__name__}")
    data = bytes(data)
    if len(data) < 3:
        raise CodecError(f"an MPTCP option needs at least 3 bytes, got {len(data)}")
    if data[0] != KIND:
        raise CodecError(f"not an MPTCP option: kind {data[0]}, expected {KIND}")
    if data[1] != len(data):
        raise CodecError(f"MPTCP option length field says {data[1]} but {len(data)} bytes given")
    return decode_value(data[2:], strict)


def decode_value(value: bytes, strict: bool = True) -> MptcpOption:
    """Decode an option from its value (the bytes after kind and length), as scapy gives them."""
    value = bytes(value)
    if len(value) < 1:
        raise CodecError("an MPTCP option needs a subtype byte")
    if len(value) > 253:
        raise CodecError(f"an MPTCP option cannot be {len(value) + 2} bytes long")
    subtype = value[0] >> 4
    length = len(value) + 2
    if subtype == Subtype.MP_JOIN:
        cls = _JOIN_BY_LENGTH.get(length)
        if cls is None:
            raise CodecError(f"MP_JOIN must be 12, 16 or 24 bytes long, not {length}")
    elif subtype in _BY_SUBTYPE:
        cls = _BY_SUBTYPE[subtype]
    else:
        return UnknownOption(subtype, value[0] & 0x0F, value[1:])
    expected = getattr(cls, "LENGTH", None)
    if expected is not None and length != expected:
        raise CodecError(f"{subtype_name(subtype)} must be {expected} bytes long, not {length}")
    option = cls._from_value(value, strict)
    reserved = getattr(option, "reserved", 0)
    if strict and reserved:
        raise CodecError(
            f"{subtype_name(subtype)} has reserved bits set (0x{reserved:x}); "
            "decode with strict=False to keep them"
        )
    return option


def encode(option: MptcpOption) -> bytes:
    """Encode an option dataclass into its whole option bytes (kind, length, value)."""
    if not isinstance(option, MptcpOption):
        raise CodecError(f"not an MPTCP option: {option!r}")
    return option.encode()


ALL_OPTION_TYPES: tuple[type[MptcpOption], ...] = (
    MpCapable,
    MpJoinSyn,
    MpJoinSynAck,
    MpJoinAck,
    Dss,
    AddAddr,
    RemoveAddr,
    MpPrio,
    MpFail,
    MpFastclose,
    MpTcpRst,
    MpExperimental,
    UnknownOption,
)

__all__ = [
    "ALL_OPTION_TYPES",
    "KIND",
    "AddAddr",
    "Dss",
    "MpCapable",
    "MpExperimental",
    "MpFail",
    "MpFastclose",
    "MpJoinAck",
    "MpJoinSyn",
    "MpJoinSynAck",
    "MpPrio",
    "MpTcpRst",
    "MptcpOption",
    "RemoveAddr",
    "RstReason",
    "Subtype",
    "UnknownOption",
    "decode",
    "decode_value",
    "encode",
    "subtype_name",
]
