"""Glue between option dataclasses and scapy's ``TCP(options=[...])`` entries.

scapy has no dissector for kind 30: it hands MPTCP options over as ``(30, value_bytes)``
and builds them from the same pair, which is all the glue needs.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from mbtest.mptcp.options import KIND, MptcpOption, decode_value, encode


def to_scapy(option: MptcpOption) -> tuple[int, bytes]:
    """The ``(30, value)`` pair scapy's TCP options list takes."""
    return (KIND, encode(option)[2:])


def scapy_options(options: Iterable[Any]) -> list[Any]:
    """A TCP options list in which option objects are replaced by scapy pairs."""
    return [to_scapy(o) if isinstance(o, MptcpOption) else o for o in options]


def from_scapy(options: Iterable[Any], strict: bool = False) -> list[MptcpOption]:
    """The MPTCP options among the ``(kind, value)`` pairs scapy returns, decoded."""
    found = []
    for entry in options:
        if isinstance(entry, tuple) and len(entry) == 2 and entry[0] in (KIND, "MPTCP"):
            found.append(decode_value(entry[1], strict=strict))
    return found
