"""Codec: every layout round-trips, wire bytes match hand-built RFC layouts, bad bytes raise."""

import ipaddress

import pytest

from mbtest.errors import CodecError
from mbtest.mptcp.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpExperimental,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    RemoveAddr,
    RstReason,
    UnknownOption,
    decode,
    decode_value,
    encode,
)

KEY_A = 0x0123456789ABCDEF
KEY_B = 0xFEDCBA9876543210
V4 = ipaddress.ip_address("10.0.2.1")
V6 = ipaddress.ip_address("2001:db8::2")


# Hand-assembled wire bytes, field by field from RFC 8684 §3 (not produced by the codec).
WIRE = [
    ("1e04" "01" "81", MpCapable(checksum_required=True)),
    ("1e04" "00" "01", None),  # v0 has no 4-byte form: checked in the malformed list
    ("1e0c" "01" "01" "0123456789abcdef", MpCapable(sender_key=KEY_A)),
    ("1e0c" "00" "81" "0123456789abcdef", MpCapable(version=0, checksum_required=True, sender_key=KEY_A)),
    (
        "1e14" "01" "01" "0123456789abcdef" "fedcba9876543210",
        MpCapable(sender_key=KEY_A, receiver_key=KEY_B),
    ),
    (
        "1e14" "00" "01" "0123456789abcdef" "fedcba9876543210",
        MpCapable(version=0, sender_key=KEY_A, receiver_key=KEY_B),
    ),
    (
        "1e16" "01" "01" "0123456789abcdef" "fedcba9876543210" "0400",
        MpCapable(sender_key=KEY_A, receiver_key=KEY_B, data_length=1024),
    ),
    (
        "1e18" "01" "81" "0123456789abcdef" "fedcba9876543210" "0400" "beef",
        MpCapable(
            checksum_required=True, sender_key=KEY_A, receiver_key=KEY_B, data_length=1024, checksum=0xBEEF
        ),
    ),
    ("1e04" "01" "e1", MpCapable(checksum_required=True, extensibility=True, no_source_subflows=True)),
    ("1e0c" "11" "05" "a1b2c3d4" "00000007", MpJoinSyn(backup=True, address_id=5, token=0xA1B2C3D4, nonce=7)),
    (
        "1e10" "10" "02" "1122334455667788" "0badcafe",
        MpJoinSynAck(address_id=2, hmac=0x1122334455667788, nonce=0x0BADCAFE),
    ),
    ("1e18" "10" "00" + "ab" * 20, MpJoinAck(hmac=b"\xab" * 20)),
    ("1e08" "20" "01" "00000064", Dss(data_ack=100, data_ack_8_bytes=False, dsn_8_bytes=False)),
    ("1e0c" "20" "03" "0000000000000064", Dss(data_ack=100, dsn_8_bytes=False)),
    (
        "1e10" "20" "04" "00001000" "00000001" "05dc" "abcd",
        Dss(dsn=0x1000, dsn_8_bytes=False, data_ack_8_bytes=False, subflow_seq=1, data_length=1500, checksum=0xABCD),
    ),
    (
        "1e1c" "20" "0f" "0000000000000064" "0000000000001000" "00000001" "05dc" "abcd",
        Dss(data_ack=100, dsn=0x1000, subflow_seq=1, data_length=1500, checksum=0xABCD),
    ),
    (
        "1e1a" "20" "0f" "0000000000000064" "0000000000001000" "00000001" "05dc",
        Dss(data_ack=100, dsn=0x1000, subflow_seq=1, data_length=1500),
    ),
    (
        "1e16" "20" "1d" "00000064" "0000000000001000" "00000000" "0001",
        Dss(data_fin=True, data_ack=100, data_ack_8_bytes=False, dsn=0x1000, subflow_seq=0, data_length=1),
    ),
    ("1e10" "30" "01" "0a000201" "0102030405060708", AddAddr(V4, 1, None, 0x0102030405060708)),
    ("1e12" "30" "01" "0a000201" "1f90" "0102030405060708", AddAddr(V4, 1, 8080, 0x0102030405060708)),
    ("1e08" "31" "01" "0a000201", AddAddr(V4, 1, echo=True)),
    ("1e0a" "31" "01" "0a000201" "1f90", AddAddr(V4, 1, 8080, echo=True)),
    ("1e1c" "30" "09" "20010db8000000000000000000000002" "0102030405060708", AddAddr(V6, 9, None, 0x0102030405060708)),
    (
        "1e1e" "30" "09" "20010db8000000000000000000000002" "0050" "0102030405060708",
        AddAddr(V6, 9, 80, 0x0102030405060708),
    ),
    ("1e14" "31" "09" "20010db8000000000000000000000002", AddAddr(V6, 9, echo=True)),
    ("1e16" "31" "09" "20010db8000000000000000000000002" "0050", AddAddr(V6, 9, 80, echo=True)),
    ("1e04" "40" "03", RemoveAddr((3,))),
    ("1e06" "40" "010203", RemoveAddr((1, 2, 3))),
    ("1e03" "51", MpPrio(backup=True)),
    ("1e04" "50" "07", MpPrio(backup=False, address_id=7)),
    ("1e0c" "60" "00" "0000000000001234", MpFail(dsn=0x1234)),
    ("1e0c" "70" "00" "fedcba9876543210", MpFastclose(receiver_key=KEY_B)),
    ("1e04" "81" "06", MpTcpRst(reason=RstReason.MIDDLEBOX_INTERFERENCE, transient=True)),
    ("1e05" "f3" "abcd", MpExperimental(nibble=3, data=b"\xab\xcd")),
    ("1e04" "a2" "ff", UnknownOption(subtype=0xA, nibble=2, data=b"\xff")),
]


@pytest.mark.parametrize("hexbytes,option", [w for w in WIRE if w[1] is not None])
def test_wire_layouts_decode_and_encode(hexbytes, option):
    wire = bytes.fromhex(hexbytes)
    assert decode(wire) == option
    assert encode(option) == wire


@pytest.mark.parametrize("reason", [*list(range(7)), 200])
@pytest.mark.parametrize("transient", [False, True])
def test_every_tcprst_reason_round_trips(reason, transient):
    option = MpTcpRst(reason=reason, transient=transient)
    assert decode(encode(option)) == option
    assert option.reason_name == (RstReason(reason).name if reason < 7 else "UNKNOWN_200")


DSS_SHAPES = [(a, d, c) for a in (None, 4, 8) for d in (None, 4, 8) for c in (False, True) if d or not c]


@pytest.mark.parametrize("fin", [False, True])
@pytest.mark.parametrize("ack,dsn,csum", DSS_SHAPES)
def test_every_dss_flag_combination_round_trips_with_the_right_length(fin, ack, dsn, csum):
    option = Dss(
        data_fin=fin,
        data_ack=None if ack is None else 0x11223344,
        data_ack_8_bytes=ack == 8,
        dsn=None if dsn is None else 0x55667788,
        dsn_8_bytes=dsn == 8,
        subflow_seq=None if dsn is None else 1,
        data_length=None if dsn is None else 0,
        checksum=0x1234 if csum else None,
    )
    wire = encode(option)
    expected = 4 + (ack or 0) + ((dsn + 6 + (2 if csum else 0)) if dsn else 0)
    assert len(wire) == wire[1] == expected
    assert decode(wire) == option
    assert option.infinite_mapping == (dsn is not None)


MALFORMED = [
    ("", "at least 3 bytes"),
    ("1e", "at least 3 bytes"),
    ("0204", "at least 3 bytes"),
    ("020405b4", "not an MPTCP option: kind 2"),
    ("1e0501", "length field says 5 but 3"),
    ("1e0300", "MP_CAPABLE version 0 must be 12/20 bytes long, not 3"),
    ("1e040001", "MP_CAPABLE version 0 must be 12/20 bytes long, not 4"),
    ("1e050101ff", "MP_CAPABLE version 1 must be 4/12/20/22/24 bytes long, not 5"),
    ("1e0d0101" + "00" * 9, "not 13"),
    ("1e0b11" + "00" * 8, "MP_JOIN must be 12, 16 or 24 bytes long, not 11"),
    ("1e0c13" + "00" * 9, "MP_JOIN has reserved bits set"),
    ("1e1811" + "00" * 21, "MP_JOIN has reserved bits set"),
    ("1e0320", "DSS is truncated"),
    ("1e062001ffff", "DSS with flags 0x01 must be 8 bytes, not 6"),
    ("1e0a2004" + "00" * 6, "DSS with flags 0x04 must be 14 or 16 bytes, not 10"),
    ("1e042080", "DSS has reserved bits set"),
    ("1e0930" + "00" * 6, "ADD_ADDR must be 8/10/16/18/20/22/28/30 bytes long, not 9"),
    ("1e0830010a000201", "a non-echo ADD_ADDR needs an HMAC"),
    ("1e1031010a0002010102030405060708", "an echo carries no HMAC"),
    ("1e0832010a000201", "ADD_ADDR of 8 bytes with E=0"),
    ("1e0340", "REMOVE_ADDR must list at least one address id"),
    ("1e044101", "REMOVE_ADDR has reserved bits set"),
    ("1e055001ff", "MP_PRIO must be 3 or 4 bytes long, not 5"),
    ("1e0352", "MP_PRIO has reserved bits set"),
    ("1e0b60" + "00" * 8, "MP_FAIL must be 12 bytes long, not 11"),
    ("1e0c6001" + "00" * 8, "MP_FAIL has reserved bits set"),
    ("1e0d70" + "00" * 10, "MP_FASTCLOSE must be 12 bytes long, not 13"),
    ("1e0380", "MP_TCPRST must be 4 bytes long, not 3"),
]


@pytest.mark.parametrize("hexbytes,message", MALFORMED)
def test_malformed_bytes_raise_a_precise_codec_error(hexbytes, message):
    with pytest.raises(CodecError) as info:
        decode(bytes.fromhex(hexbytes))
    assert message in str(info.value)


def test_lenient_decoding_keeps_reserved_bits_and_round_trips():
    wire = bytes.fromhex("1e0c6abc0000000000001234")
    option = decode(wire, strict=False)
    assert option == MpFail(dsn=0x1234, reserved=0xABC)
    assert encode(option) == wire
    dss = decode(bytes.fromhex("1e082fe100000064"), strict=False)
    assert dss.reserved == 0x7F and dss.data_ack == 100
    assert encode(dss) == bytes.fromhex("1e082fe100000064")


@pytest.mark.parametrize(
    "option,message",
    [
        (MpCapable(receiver_key=1), "needs the sender's key"),
        (MpCapable(sender_key=1, data_length=5), "needs both keys"),
        (MpCapable(version=0, sender_key=1, receiver_key=2, data_length=5), "version 0 has no 22-byte form"),
        (MpCapable(sender_key=1 << 64), "unsigned 64-bit"),
        (MpJoinSyn(token=-1), "unsigned 32-bit"),
        (MpJoinAck(hmac=b"x"), "must be 20 bytes"),
        (Dss(dsn=1), "needs a subflow sequence number"),
        (Dss(subflow_seq=1), "needs a DSN"),
        (Dss(dsn=1 << 32, dsn_8_bytes=False, subflow_seq=0, data_length=0), "unsigned 32-bit"),
        (AddAddr("10.0.0.1"), "must be an IP address"),
        (RemoveAddr(()), "between 1 and 252"),
        (MpTcpRst(reason=256), "unsigned 8-bit"),
    ],
)
def test_unencodable_options_raise_codec_errors(option, message):
    with pytest.raises(CodecError, match=message):
        encode(option)


def test_decode_value_is_what_scapy_hands_over():
    assert decode_value(bytes.fromhex("8106")) == MpTcpRst(reason=6, transient=True)
    with pytest.raises(CodecError):
        decode_value(b"")


def test_encode_refuses_non_options():
    with pytest.raises(CodecError):
        encode(b"\x1e\x03\x00")
