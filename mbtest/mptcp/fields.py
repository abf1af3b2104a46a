"""Flat, JSON-ready views of option dataclasses, for tables, JSON lines and diffs."""

from __future__ import annotations

import dataclasses
import functools
import ipaddress
from typing import Any

from mbtest.mptcp.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MptcpOption,
    MpTcpRst,
    RemoveAddr,
    subtype_name,
)


def _plain(value: Any) -> Any:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, tuple):
        return list(value)
    return value


@functools.cache
def _field_names(cls: type) -> tuple[str, ...]:
    return tuple(f.name for f in dataclasses.fields(cls) if f.name != "subtype")


def option_fields(option: MptcpOption) -> dict[str, Any]:
    """Every field of an option by name, with its subtype and kind names first."""
    out: dict[str, Any] = {
        "subtype": subtype_name(option.SUBTYPE if hasattr(option, "SUBTYPE") else option.subtype),
        "option": option.name,
    }
    for name in _field_names(type(option)):
        out[name] = _plain(getattr(option, name))
    if isinstance(option, MpTcpRst):
        out["reason_name"] = option.reason_name
    return out


def describe(option: MptcpOption) -> str:
    """A short one-line summary, leaving out absent fields and zero reserved bits."""
    parts = []
    for name, value in option_fields(option).items():
        if name in ("subtype", "option") or value is None:
            continue
        if name in ("reserved", "unassigned_flags") and not value:
            continue
        if isinstance(value, int) and not isinstance(value, bool) and value > 0xFFFF:
            value = f"0x{value:x}"
        parts.append(f"{name}={value}")
    return f"{option.name} " + " ".join(parts)


def short(option: MptcpOption) -> str:
    """The option in a few words, as tables and the probe's answers name it
    (``MP_CAPABLE v1 flags AH, 1 key``, ``DSS data ack 5, mapping 1000+51``)."""
    if isinstance(option, Dss):  # (most packets: asked first)
        parts = []
        if option.data_ack is not None:
            parts.append(f"data ack {option.data_ack}")
        if option.dsn is not None:
            mapping = f"mapping {option.dsn}+{option.data_length} ssn {option.subflow_seq}"
            if option.checksum is not None:
                mapping += f" csum 0x{option.checksum:04x}"
            parts.append(mapping)
            if option.infinite_mapping:
                parts.append("infinite")
        if option.data_fin:
            parts.append("DATA_FIN")
        return "DSS " + (", ".join(parts) or "empty")
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
        if option.data_length is not None:
            extra += f", data-level length {option.data_length}"
        return f"MP_CAPABLE v{option.version} flags {letters or 'none'}{extra}"
    if isinstance(option, MpJoinSyn):
        backup = " backup" if option.backup else ""
        return f"MP_JOIN SYN token 0x{option.token:08x} id {option.address_id}{backup}"
    if isinstance(option, MpJoinSynAck):
        return f"MP_JOIN SYN/ACK id {option.address_id}"
    if isinstance(option, MpJoinAck):
        return "MP_JOIN ACK"
    if isinstance(option, AddAddr):
        port = f" port {option.port}" if option.port else ""
        echo = " echo" if option.echo else ""
        return f"ADD_ADDR{echo} {option.address} id {option.address_id}{port}"
    if isinstance(option, RemoveAddr):
        return "REMOVE_ADDR id " + ",".join(str(i) for i in option.address_ids)
    if isinstance(option, MpPrio):
        return "MP_PRIO" + (" backup" if option.backup else "")
    if isinstance(option, MpTcpRst):
        transient = " transient" if option.transient else ""
        return f"MP_TCPRST reason {option.reason_name}{transient}"
    if isinstance(option, MpFail):
        return f"MP_FAIL at {option.dsn}"
    if isinstance(option, MpFastclose):
        return "MP_FASTCLOSE"
    return subtype_name(getattr(option, "SUBTYPE", getattr(option, "subtype", 0)))
