"""Middlebox specifications: ``NAME:key=value,key=value`` on the command line and in files.

Lists are written with ``+`` (``subtypes=MP_CAPABLE+DSS``). Every parameter is typed and
checked; a bad one is one sentence naming the parameter and what is allowed.
"""

from __future__ import annotations

import ipaddress
import math
from dataclasses import dataclass
from typing import Any

from mbtest.errors import MbtestError


class MiddleboxError(MbtestError):
    """An unknown behaviour or a bad parameter."""


@dataclass(frozen=True)
class Param:
    name: str
    kind: str  # int, float, str, bool, choice, choices (a + list), address
    default: Any
    help: str
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None

    def describe(self) -> str:
        if self.kind in ("choice", "choices"):
            allowed = "one of " if self.kind == "choice" else "any of (joined by +) "
            return allowed + ", ".join(self.choices)
        if self.kind in ("int", "float"):
            low = (
                ""
                if self.minimum is None
                else f"{self.minimum:{'d' if self.kind == 'int' else 'g'}}"
            )
            high = (
                ""
                if self.maximum is None
                else f"{self.maximum:{'d' if self.kind == 'int' else 'g'}}"
            )
            return f"{'an integer' if self.kind == 'int' else 'a number'} in [{low}, {high}]"
        if self.kind == "str" and self.minimum:
            return f"text of at least {self.minimum:g} character(s)"
        return {"bool": "true or false", "address": "an IP address", "str": "text"}[self.kind]

    def convert(self, behaviour: str, raw: Any) -> Any:
        def bad() -> MiddleboxError:
            return MiddleboxError(
                f"{behaviour}: parameter {self.name}={raw!r} is not valid: "
                f"expected {self.describe()}"
            )

        text = str(raw)
        if self.kind == "int":
            try:
                value: Any = int(text, 0)
            except ValueError:
                raise bad() from None
        elif self.kind == "float":
            try:
                value = float(text)
            except ValueError:
                raise bad() from None
            if not math.isfinite(value):
                raise bad()
        elif self.kind == "bool":
            if text.lower() not in ("true", "false", "1", "0", "yes", "no"):
                raise bad()
            return text.lower() in ("true", "1", "yes")
        elif self.kind == "choice":
            if text not in self.choices:
                raise bad()
            return text
        elif self.kind == "choices":
            items = raw if isinstance(raw, (list, tuple)) else text.split("+")
            if not items or any(i not in self.choices for i in items):
                raise bad()
            return tuple(items)
        elif self.kind == "address":
            try:
                return str(ipaddress.ip_address(text))
            except ValueError:
                raise bad() from None
        else:
            if self.minimum is not None and len(text) < self.minimum:
                raise bad()
            if any(ord(c) < 32 for c in text):  # no newlines or control characters
                raise bad()
            return text
        if (self.minimum is not None and value < self.minimum) or (
            self.maximum is not None and value > self.maximum
        ):
            raise bad()
        return value


def parse_spec(spec: str) -> tuple[str, dict[str, str]]:
    """``strip-option:subtypes=MP_CAPABLE,mode=nop`` -> ("strip-option", {...})."""
    if any(ord(c) < 32 for c in spec):
        raise MiddleboxError(f"middlebox {spec!r} contains a control character (a newline?)")
    name, _, rest = spec.strip().partition(":")
    if not name:
        raise MiddleboxError(f"middlebox {spec!r} has no behaviour name (NAME:key=value,...)")
    params: dict[str, str] = {}
    for item in filter(None, rest.split(",")):
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise MiddleboxError(f"middlebox {name}: {item!r} is not key=value")
        if key.strip() in params:
            raise MiddleboxError(f"middlebox {name}: parameter {key.strip()} is given twice")
        params[key.strip()] = value.strip()
    return name, params


def bind(behaviour: str, spec: tuple[Param, ...], given: dict[str, Any]) -> dict[str, Any]:
    """Typed values for every parameter: the given ones checked, the others defaulted."""
    known = {p.name: p for p in spec}
    for key in given:
        if key not in known:
            allowed = ", ".join(known) or "none"
            raise MiddleboxError(f"{behaviour}: unknown parameter {key!r} (parameters: {allowed})")
    return {
        p.name: p.convert(behaviour, given[p.name]) if p.name in given else p.default for p in spec
    }
