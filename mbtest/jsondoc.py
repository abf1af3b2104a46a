"""How every JSON document and line mbtest writes is spelled, so that jq, JavaScript and
other readers get exactly what was measured.

- 64-bit values (MPTCP keys, data sequence numbers, data acks, truncated HMACs, MPTCP_INFO
  sequence numbers) are decimal strings: a JSON number above 2**53 is rounded by most
  readers (11797614010818209560 reads back as 11797614010818210000).
- Points in time are RFC 3339 strings in UTC with microseconds; durations stay numbers of
  seconds.

The spelling is applied once, when a document is written (``dumps``); in memory the values
stay Python ints and floats. Readers accept both spellings (``number``, ``epoch``), so files
written before (schema version 1) still read.
"""

from __future__ import annotations

import datetime as _dt
import json
from typing import Any

# keys whose integer values are 64-bit quantities, wherever they appear
U64_KEYS = frozenset(
    {
        "sender_key",
        "receiver_key",
        "key",
        "dsn",
        "data_ack",
        "data_seq",
        "hmac",
        "write_seq",
        "snd_una",
        "rcv_nxt",
        "idsn",
        "data_end",  # (a conformance probe's context: data sequence numbers it judges by)
        "mapped_end",
        "failed_dsn",
        "control_data_end",
    }
)
# keys whose float values are points in time (seconds since the epoch)
TIME_KEYS = frozenset({"started", "finished", "time", "created"})


def rfc3339(epoch: float) -> str:
    """2026-11-30T03:18:06.123456Z"""
    moment = _dt.datetime.fromtimestamp(epoch, _dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def epoch(value: Any) -> float | None:
    """A point in time as seconds since the epoch, from either spelling (None if neither)."""
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return float(value)
    if isinstance(value, str):
        try:
            return _dt.datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
        except ValueError:
            return None
    return None


def number(value: Any) -> int | None:
    """A 64-bit value from either spelling (a decimal string or a JSON number)."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, str) and value.isdigit():
        return int(value)
    return None


SPELLED_KEYS = U64_KEYS | TIME_KEYS
_AS_IS = frozenset({str, int, float, bool, type(None)})  # (exact types: not bool's subclass)


def spelled(document: Any, key: str | None = None) -> Any:
    """A copy of the document in the written spelling (see the module's docstring). Plain
    values under other keys are taken as they are without a call: every decoded packet
    goes through here."""
    kind = type(document)
    if kind is dict or isinstance(document, dict):
        return {
            k: v if type(v) in _AS_IS and k not in SPELLED_KEYS else spelled(v, k)
            for k, v in document.items()
        }
    if kind is list or kind is tuple or isinstance(document, (list, tuple)):
        if key not in SPELLED_KEYS and all(type(v) in _AS_IS for v in document):
            return list(document)
        return [spelled(v, key) for v in document]
    if key in U64_KEYS and isinstance(document, int) and not isinstance(document, bool):
        return str(document)
    if key in TIME_KEYS and isinstance(document, float):
        return rfc3339(document)
    return document


def dumps(document: Any, indent: int | None = None) -> str:
    """The document as JSON text in the written spelling."""
    return json.dumps(spelled(document), indent=indent)


VERSION = 2  # of every schema below; readers accept 1 too
# a campaign target's result in one word (campaign.schema.json), for the writer and readers
CAMPAIGN_OUTCOMES = (
    "clean", "changed", "not-observable", "no-mptcp", "unreachable", "no-answer", "error",
)  # fmt: skip


def schema(kind: str) -> str:
    """The schema name written in a document of this kind: mbtest.cell/2."""
    return f"mbtest.{kind}/{VERSION}"


def is_schema(value: Any, kind: str) -> bool:
    """Whether a document's schema field names this kind, in a version readers accept."""
    return value in {f"mbtest.{kind}/{v}" for v in range(1, VERSION + 1)}


def plain(value: Any) -> str:
    """A value as a reader writes it in text: true / false, none, lists and tables spelled
    out, never a Python repr."""
    if value is None:
        return "none"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, dict):
        return ", ".join(f"{k}: {plain(v)}" for k, v in value.items()) or "-"
    if isinstance(value, (list, tuple, set, frozenset)):
        return ", ".join(plain(v) for v in value) or "-"
    return str(value)
