"""Flat, JSON-ready views of option dataclasses, for tables, JSON lines and diffs."""

from __future__ import annotations

import dataclasses
import ipaddress
from typing import Any

from mbtest.mptcp.options import MptcpOption, MpTcpRst, subtype_name


def _plain(value: Any) -> Any:
    if isinstance(value, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
        return str(value)
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, tuple):
        return list(value)
    return value


def option_fields(option: MptcpOption) -> dict[str, Any]:
    """Every field of an option by name, with its subtype and kind names first."""
    out: dict[str, Any] = {
        "subtype": subtype_name(option.SUBTYPE if hasattr(option, "SUBTYPE") else option.subtype),
        "option": option.name,
    }
    for f in dataclasses.fields(option):
        if f.name == "subtype":
            continue
        out[f.name] = _plain(getattr(option, f.name))
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
