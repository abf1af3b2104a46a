"""Property tests: decode never fails with anything but CodecError; valid options round-trip."""

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

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
    UnknownOption,
    decode,
    encode,
)

u = lambda bits: st.integers(0, (1 << bits) - 1)  # noqa: E731
opt = lambda bits: st.none() | u(bits)  # noqa: E731


@st.composite
def mp_capable(draw):
    version = draw(st.sampled_from([0, 1]))
    nkeys = draw(st.sampled_from([1, 2] if version == 0 else [0, 1, 2]))
    with_length = version == 1 and nkeys == 2 and draw(st.booleans())
    return MpCapable(
        version=version,
        checksum_required=draw(st.booleans()),
        extensibility=draw(st.booleans()),
        no_source_subflows=draw(st.booleans()),
        unassigned_flags=draw(u(4)),
        hmac_sha256=draw(st.booleans()),
        sender_key=draw(u(64)) if nkeys >= 1 else None,
        receiver_key=draw(u(64)) if nkeys == 2 else None,
        data_length=draw(u(16)) if with_length else None,
        checksum=draw(opt(16)) if with_length else None,
    )


@st.composite
def dss(draw):
    ack8, dsn8 = draw(st.booleans()), draw(st.booleans())
    mapped = draw(st.booleans())
    return Dss(
        data_fin=draw(st.booleans()),
        data_ack=draw(opt(64 if ack8 else 32)),
        data_ack_8_bytes=ack8,
        dsn=draw(u(64 if dsn8 else 32)) if mapped else None,
        dsn_8_bytes=dsn8,
        subflow_seq=draw(u(32)) if mapped else None,
        data_length=draw(u(16)) if mapped else None,
        checksum=draw(opt(16)) if mapped else None,
    )


@st.composite
def add_addr(draw):
    echo = draw(st.booleans())
    address = draw(st.ip_addresses())
    return AddAddr(
        address=ipaddress.ip_address(address),
        address_id=draw(u(8)),
        port=draw(opt(16)),
        hmac=None if echo else draw(u(64)),
        echo=echo,
    )


options = st.one_of(
    mp_capable(),
    st.builds(MpJoinSyn, st.booleans(), u(8), u(32), u(32)),
    st.builds(MpJoinSynAck, st.booleans(), u(8), u(64), u(32)),
    st.builds(MpJoinAck, st.binary(min_size=20, max_size=20)),
    dss(),
    add_addr(),
    st.builds(RemoveAddr, st.lists(u(8), min_size=1, max_size=40).map(tuple)),
    st.builds(MpPrio, st.booleans(), opt(8)),
    st.builds(MpFail, u(64)),
    st.builds(MpFastclose, u(64)),
    st.builds(MpTcpRst, u(8), st.booleans(), u(3)),
    st.builds(MpExperimental, u(4), st.binary(max_size=60)),
    st.builds(UnknownOption, st.integers(9, 14), u(4), st.binary(max_size=60)),
)


@given(options)
def test_valid_options_round_trip(option):
    wire = encode(option)
    assert wire[0] == 30 and wire[1] == len(wire)
    assert decode(wire) == option
    assert encode(decode(wire)) == wire


@given(st.binary(max_size=64), st.booleans())
def test_random_bytes_never_crash_decode(data, strict):
    try:
        option = decode(data, strict=strict)
    except CodecError:
        return
    assert encode(option) == data


@given(st.integers(0, 15), st.integers(0, 15), st.binary(max_size=40), st.booleans())
def test_random_option_bodies_never_crash_decode(subtype, nibble, body, strict):
    data = bytes((30, len(body) + 3, (subtype << 4) | nibble)) + body
    try:
        option = decode(data, strict=strict)
    except CodecError:
        return
    assert encode(option) == data


@given(st.binary(max_size=44))
def test_the_inline_option_reader_agrees_with_option_spans(raw):
    """tcp_options reads the field inline for speed: same options, same errors."""
    from mbtest.errors import PacketError
    from mbtest.packet.edit import option_spans
    from mbtest.packet.headers import tcp_options

    try:
        spans = option_spans(raw)
    except PacketError as e:
        with pytest.raises(PacketError) as raised:
            tcp_options(raw)
        assert str(raised.value) == str(e)
        return
    expected = [(s.kind, bytes(raw[s.start + 2 : s.end]) if s.kind > 1 else b"") for s in spans]
    assert tcp_options(raw) == expected
