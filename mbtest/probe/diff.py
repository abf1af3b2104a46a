"""Pure: what changed between a packet as sent and as a router quoted it (or between the
quotes of two hops), field by field, down to each field of each MPTCP option.

Only what both sides hold is compared: a quote cut after 8 bytes of TCP says nothing about
the options, so nothing there is reported as removed. TTL and checksums are left out (routers
change them); the TCP checksum follows every other change.
"""

from __future__ import annotations

import dataclasses
import struct
from dataclasses import dataclass
from typing import Any

from mbtest.errors import MbtestError
from mbtest.mptcp.options import KIND as MPTCP_KIND
from mbtest.mptcp.options import decode, subtype_name
from mbtest.packet.edit import OptionSpan, option_spans
from mbtest.packet.names import EOL, NOP, flag_text
from mbtest.packet.names import option_name as kind_name
from mbtest.packet.quote import View

_IP_LABELS = {"ip.tos": "IP TOS", "ip.length": "IP length", "ip.id": "IP ID",
              "ip.flags": "IP flags", "ip.fragment_offset": "IP fragment offset",
              "ip.protocol": "IP protocol", "ip.options": "IP options",
              "ip.traffic_class": "IPv6 traffic class",
              "ip.flow_label": "IPv6 flow label"}  # fmt: skip
_HEX_FIELDS = {"ip.id", "ip.flow_label", "ip.tos", "ip.traffic_class"}
_FLAG_LETTERS = {
    ("MP_CAPABLE", "checksum_required"): "A", ("MP_CAPABLE", "extensibility"): "B",
    ("MP_CAPABLE", "no_source_subflows"): "C", ("MP_CAPABLE", "hmac_sha256"): "H",
    ("MP_CAPABLE", "unassigned_flags"): "D-G", ("MP_JOIN", "backup"): "B",
    ("DSS", "data_fin"): "F", ("DSS", "data_ack_8_bytes"): "a", ("DSS", "dsn_8_bytes"): "m",
    ("ADD_ADDR", "echo"): "E", ("MP_PRIO", "backup"): "B",
}  # fmt: skip
_OPAQUE = {"checksum", "hmac", "sender_key", "receiver_key", "nonce", "token", "data"}
_LABELS = {"dsn": "data sequence number", "subflow_seq": "subflow sequence number",
           "data_length": "data-level length", "data_ack": "data ack",
           "address_id": "address id", "sender_key": "sender key",
           "receiver_key": "receiver key"}  # fmt: skip


@dataclass(frozen=True)
class Change:
    """One difference: a field path (``MP_CAPABLE.version``, ``tcp.seq``...) and a sentence."""

    field: str
    text: str
    before: Any = None
    after: Any = None

    def as_dict(self) -> dict[str, Any]:
        return {"field": self.field, "text": self.text, "before": self.before, "after": self.after}


def _signed_delta(before: int, after: int) -> str:
    delta = (after - before) & 0xFFFFFFFF
    if delta >= 1 << 31:
        delta -= 1 << 32
    return f"{delta:+d}"


def _endpoint(address: Any, port: int | None) -> str:
    if port is None:
        return str(address)
    return f"[{address}]:{port}" if ":" in str(address) else f"{address}:{port}"


def diff(before: View, after: View) -> list[Change]:
    """Every difference between two views of one packet, in header order."""
    changes: list[Change] = []
    b_ip, a_ip = before.ip_fields(), after.ip_fields()
    for name, label in _IP_LABELS.items():
        if name in b_ip and name in a_ip and b_ip[name] != a_ip[name]:
            old, new = b_ip[name], a_ip[name]
            shown = (f"0x{old:x}", f"0x{new:x}") if name in _HEX_FIELDS else (old, new)
            changes.append(Change(name, f"{label} {shown[0]} -> {shown[1]}", old, new))
    for name, addr, port in (("source", "src", "sport"), ("destination", "dst", "dport")):
        if addr not in b_ip or addr not in a_ip:
            continue
        old = _endpoint(b_ip[addr], getattr(before, port))
        new = _endpoint(a_ip[addr], getattr(after, port) if getattr(before, port) else None)
        if old != new:
            changes.append(Change(name, f"{name} {old} -> {new}", old, new))
    changes += _tcp_header(before.tcp_fields(), after.tcp_fields())
    changes += diff_options(before, after)
    changes += _payload(before, after)
    return changes


def _tcp_header(b: dict[str, Any], a: dict[str, Any]) -> list[Change]:
    out = []
    for name in ("tcp.seq", "tcp.ack"):
        if name in b and name in a and b[name] != a[name]:
            text = f"TCP {name[4:]} {_signed_delta(b[name], a[name])}"
            out.append(Change(name, text, b[name], a[name]))
    if "tcp.offset" in b and "tcp.offset" in a and b["tcp.offset"] != a["tcp.offset"]:
        old, new = b["tcp.offset"] * 4, a["tcp.offset"] * 4
        out.append(Change("tcp.offset", f"TCP header length {old} -> {new} bytes", old, new))
    if "tcp.flags" in b and "tcp.flags" in a and b["tcp.flags"] != a["tcp.flags"]:
        old, new = flag_text(b["tcp.flags"]), flag_text(a["tcp.flags"])
        out.append(Change("tcp.flags", f"TCP flags {old} -> {new}", old, new))
    for name, label in (("tcp.window", "TCP window"), ("tcp.urgent", "TCP urgent pointer")):
        if name in b and name in a and b[name] != a[name]:
            out.append(Change(name, f"{label} {b[name]} -> {a[name]}", b[name], a[name]))
    return out


# --- options ---------------------------------------------------------------------------------


def option_label(raw: bytes, span: OptionSpan) -> str:
    if span.kind == MPTCP_KIND:
        sub = span.subtype(raw)
        return subtype_name(sub) if sub is not None else "MPTCP"
    return kind_name(span.kind)


def _spans(raw: bytes, complete: bool) -> list[OptionSpan]:
    """The options of a (possibly cut) field; an option cut by the quote's end is left out,
    a malformed one in a complete field is kept as one blob up to the end."""
    spans = option_spans(raw, cut=True)
    end = spans[-1].end if spans else 0
    if complete and end < len(raw) and not (spans and spans[-1].kind == EOL):
        spans.append(OptionSpan(raw[end], end, len(raw)))
    return spans


def diff_options(before: View, after: View) -> list[Change]:
    b_raw, a_raw = before.options, after.options
    if b_raw is None or a_raw is None:
        return []
    extent = min(
        len(b_raw) if not before.options_complete else 1 << 16,
        len(a_raw) if not after.options_complete else 1 << 16,
    )
    b_spans = [s for s in _spans(b_raw, before.options_complete) if s.end <= extent]
    a_spans = [s for s in _spans(a_raw, after.options_complete) if s.end <= extent]
    b_items = [s for s in b_spans if s.kind not in (EOL, NOP)]
    a_items = [s for s in a_spans if s.kind not in (EOL, NOP)]
    used: set[int] = set()
    pairs: list[tuple[OptionSpan, OptionSpan]] = []
    changes: list[Change] = []
    for b in b_items:
        name = option_label(b_raw, b)
        match = next(
            (
                i
                for i, a in enumerate(a_items)
                if i not in used and a.kind == b.kind and option_label(a_raw, a) == name
            ),
            None,
        )
        if match is None:
            changes.append(_removed(name, b, b_raw, a_raw, a_spans, before, after))
            continue
        used.add(match)
        a = a_items[match]
        pairs.append((b, a))
        old, new = bytes(b_raw[b.start : b.end]), bytes(a_raw[a.start : a.end])
        if old != new:
            changes += _option_value(name, old, new)
    for i, a in enumerate(a_items):
        if i not in used:
            text = f"{option_label(a_raw, a)} added at byte {a.start}"
            changes.append(Change("tcp.options", text, None, bytes(a_raw[a.start : a.end]).hex()))
    order = [a.start for _, a in pairs]
    if order != sorted(order):
        old = ", ".join(option_label(b_raw, b) for b, _ in pairs)
        new = ", ".join(option_label(a_raw, a) for _, a in sorted(pairs, key=lambda p: p[1].start))
        changes.append(Change("tcp.options", f"TCP options reordered: {old} -> {new}", old, new))
    if not changes and bytes(b_raw[:extent]) != bytes(a_raw[:extent]):
        changes.append(
            Change(
                "tcp.options", "TCP option padding changed", bytes(b_raw).hex(), bytes(a_raw).hex()
            )
        )
    return changes


def _removed(
    name: str,
    span: OptionSpan,
    b_raw: bytes,
    a_raw: bytes,
    a_spans: list[OptionSpan],
    before: View,
    after: View,
) -> Change:
    """Say what took the place of an option that is gone."""
    size = span.end - span.start
    there = bytes(a_raw[span.start : span.end])
    eol = next((s.start for s in a_spans if s.kind == EOL), None)
    if len(there) == size and there == bytes([NOP]) * size:
        how = f": replaced by {size} NOPs"
    elif eol is not None and eol <= span.start:
        how = f": cut off by an EOL at byte {eol}"
    elif (after.header_length or 0) < (before.header_length or 0):
        how = f", the TCP header shrank by {before.header_length - after.header_length} bytes"
    else:
        how = ""
    return Change(
        "tcp.options",
        f"{name} removed{how}",
        bytes(b_raw[span.start : span.end]).hex(),
        there.hex() or None,
    )


def _option_value(name: str, old: bytes, new: bytes) -> list[Change]:
    kind = old[0]
    if kind == MPTCP_KIND:
        return _mptcp_fields(name, old, new)
    if kind == 2 and len(old) == len(new) == 4:
        a, b = struct.unpack("!H", old[2:])[0], struct.unpack("!H", new[2:])[0]
        return [Change("tcp.options.MSS", f"MSS {a} -> {b}", a, b)]
    if kind == 3 and len(old) == len(new) == 3:
        return [
            Change("tcp.options.window_scale", f"window scale {old[2]} -> {new[2]}", old[2], new[2])
        ]
    if kind == 8 and len(old) == len(new) == 10:
        out = []
        for label, at in (("TSval", 2), ("TSecr", 6)):
            a, b = struct.unpack_from("!I", old, at)[0], struct.unpack_from("!I", new, at)[0]
            if a != b:
                text = f"timestamps {label} {_signed_delta(a, b)}"
                out.append(Change(f"tcp.options.timestamps.{label}", text, a, b))
        return out
    return [
        Change(
            f"tcp.options.{name}",
            f"{name} changed: {old.hex()} -> {new.hex()}",
            old.hex(),
            new.hex(),
        )
    ]


def _mptcp_fields(name: str, old: bytes, new: bytes) -> list[Change]:
    try:
        a, b = decode(old, strict=False), decode(new, strict=False)
    except MbtestError:
        return [
            Change(
                f"{name}", f"{name} bytes changed: {old.hex()} -> {new.hex()}", old.hex(), new.hex()
            )
        ]
    if type(a) is not type(b):
        return [Change(f"{name}", f"{name} became {b.name} (was {a.name})", a.name, b.name)]
    out = []
    for f in dataclasses.fields(a):
        x, y = getattr(a, f.name), getattr(b, f.name)
        if x == y:
            continue
        path = f"{name}.{f.name}"
        letter = _FLAG_LETTERS.get((name, f.name))
        if letter:
            text = f"{name} flag {letter} {int(x)} -> {int(y)}"
        elif f.name in _OPAQUE:
            text = f"{name} {f.name.replace('_', ' ')} changed: {_show(x)} -> {_show(y)}"
        else:
            text = f"{name} {_LABELS.get(f.name, f.name)} {_show(x)} -> {_show(y)}"
        out.append(Change(path, text, _show(x), _show(y)))
    return out


def _show(value: Any) -> Any:
    if value is None:
        return "none"
    if isinstance(value, (bytes, bytearray)):
        return bytes(value).hex()
    if isinstance(value, bool):
        return int(value)
    if isinstance(value, int) and value > 0xFFFF:
        return f"0x{value:x}"
    return value if isinstance(value, int) else str(value)


def _payload(before: View, after: View) -> list[Change]:
    b, a = before.payload, after.payload
    if b is None or a is None:
        return []
    out = []
    if before.payload_complete and after.payload_complete and len(a) != len(b):
        word = "added" if len(a) > len(b) else "removed"
        text = f"payload {len(b)} -> {len(a)} bytes ({abs(len(a) - len(b))} {word})"
        out.append(Change("payload.length", text, len(b), len(a)))
    common = min(len(a), len(b))
    differ = [i for i in range(common) if a[i] != b[i]]
    if differ:
        text = f"payload changed: {len(differ)} of {common} bytes, first at byte {differ[0]}"
        out.append(
            Change(
                "payload",
                text,
                bytes(b[differ[0] : differ[-1] + 1]).hex(),
                bytes(a[differ[0] : differ[-1] + 1]).hex(),
            )
        )
    return out
