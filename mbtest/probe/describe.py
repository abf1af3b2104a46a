"""Pure: short human descriptions of segments and of the destination's answer to a probe."""

from __future__ import annotations

import struct
from typing import Any

from mbtest.errors import CodecError
from mbtest.mptcp.fields import short
from mbtest.mptcp.options import MptcpOption
from mbtest.packet.headers import TcpSegment
from mbtest.packet.names import flag_text, option_name


def mptcp_short(option: MptcpOption | CodecError) -> str:
    if isinstance(option, CodecError):
        return f"malformed MPTCP option ({option})"
    return short(option)


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
