"""Pure: short human descriptions of segments and of the destination's answer to a probe."""

from __future__ import annotations

import struct
from typing import Any

from mbtest.errors import CodecError
from mbtest.mptcp.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MptcpOption,
    MpTcpRst,
    subtype_name,
)
from mbtest.packet.headers import TcpSegment
from mbtest.packet.names import flag_text, option_name


def mptcp_short(option: MptcpOption | CodecError) -> str:
    if isinstance(option, CodecError):
        return f"malformed MPTCP option ({option})"
    if isinstance(option, MpCapable):
        letters = "".join(
            letter
            for letter, on in (
                ("A", option.checksum_required),
                ("B", option.extensibility),
                ("C", option.no_source_subflows),
                ("H", option.hmac_sha256),
            )
            if on
        )
        keys = sum(k is not None for k in (option.sender_key, option.receiver_key))
        extra = f", {keys} key{'s' if keys != 1 else ''}" if keys else ""
        return f"MP_CAPABLE v{option.version} flags {letters or 'none'}{extra}"
    if isinstance(option, (MpJoinSyn, MpJoinSynAck, MpJoinAck)):
        return "MP_JOIN" + (f" token 0x{option.token:08x}" if isinstance(option, MpJoinSyn) else "")
    if isinstance(option, Dss):
        parts = []
        if option.data_ack is not None:
            parts.append(f"data ack {option.data_ack}")
        if option.dsn is not None:
            parts.append(f"mapping {option.dsn}+{option.data_length}")
            if option.infinite_mapping:
                parts.append("infinite")
        if option.data_fin:
            parts.append("DATA_FIN")
        return "DSS " + ", ".join(parts)
    if isinstance(option, AddAddr):
        port = f" port {option.port}" if option.port else ""
        echo = " echo" if option.echo else ""
        return f"ADD_ADDR{echo} {option.address} id {option.address_id}{port}"
    if isinstance(option, MpTcpRst):
        return f"MP_TCPRST reason {option.reason_name}"
    if isinstance(option, MpFail):
        return f"MP_FAIL at {option.dsn}"
    if isinstance(option, MpFastclose):
        return "MP_FASTCLOSE"
    return subtype_name(getattr(option, "SUBTYPE", getattr(option, "subtype", 0)))


def options_short(segment: TcpSegment) -> list[str]:
    out = []
    for kind, value in segment.options():
        if kind in (0, 1):
            continue
        if kind == 2 and len(value) == 2:
            out.append(f"MSS {struct.unpack('!H', value)[0]}")
        elif kind == 3 and len(value) == 1:
            out.append(f"window scale {value[0]}")
        elif kind != 30:
            out.append(option_name(kind))
    return out + [mptcp_short(o) for o in segment.mptcp_options()]


def segment_kind(segment: TcpSegment) -> str:
    if segment.rst:
        return "RST"
    if segment.syn:
        return "SYN/ACK" if segment.is_ack else "SYN"
    if segment.fin:
        return "FIN"
    return "ACK" if segment.is_ack else flag_text(segment.flags)


def answer(segment: TcpSegment, probe_has_mptcp: bool) -> dict[str, Any]:
    """What the destination said, as a sentence and as fields."""
    kind = segment_kind(segment)
    mptcp = [mptcp_short(o) for o in segment.mptcp_options()]
    if mptcp:
        text = f"{kind} with " + ", ".join(mptcp)
    elif kind == "SYN/ACK" and probe_has_mptcp:
        text = "SYN/ACK without MPTCP options: the target answers in plain TCP"
    else:
        text = kind
    return {
        "kind": kind,
        "flags": flag_text(segment.flags),
        "mptcp": mptcp,
        "options": options_short(segment),
        "text": text,
    }
