"""A middlebox specification, parsed once: ``NAME:key=value,...`` (lists joined by ``+``) or
a table ``{behaviour = NAME, key = value}``, checked against the behaviour's parameters.
The object travels (command line, scenario, testbed, report); its text is canonical."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from mbtest.middlebox import catalog
from mbtest.middlebox.base import Behaviour
from mbtest.middlebox.params import MiddleboxError, parse_spec


@dataclass(frozen=True)
class MiddleboxSpec:
    """A behaviour's name and its typed parameters (defaults filled in)."""

    name: str
    params: tuple[tuple[str, Any], ...]

    @classmethod
    def parse(cls, spec: str | dict[str, Any] | MiddleboxSpec) -> MiddleboxSpec:
        if isinstance(spec, MiddleboxSpec):
            return spec
        if isinstance(spec, dict):
            given = dict(spec)
            name = given.pop("behaviour", None)
            if not isinstance(name, str):
                raise MiddleboxError("a middlebox table needs behaviour = NAME")
        elif isinstance(spec, str):
            name, given = parse_spec(spec)
        else:
            raise MiddleboxError(f"a middlebox is NAME:key=value,..., not {spec!r}")
        behaviour = catalog.get(name)(given)  # checks every parameter
        return cls(name, tuple(behaviour.params.items()))

    @property
    def behaviour_class(self) -> type[Behaviour]:
        return catalog.get(self.name)

    def build(self) -> Behaviour:
        """A fresh behaviour (its own per-flow state) with these parameters."""
        return self.behaviour_class(dict(self.params))

    @property
    def text(self) -> str:
        """The canonical ``NAME:key=value,...`` form, every parameter spelled out."""
        return self.build().spec

    def __str__(self) -> str:
        return self.text


def placement(text: str) -> tuple[str, MiddleboxSpec]:
    """``SLOT=NAME[:key=value,...]`` as given to --middlebox."""
    slot, sep, spec = text.partition("=")
    if not sep or not slot.strip() or not spec.strip():
        raise MiddleboxError(f"{text!r} is not SLOT=NAME[:key=value,...]")
    return slot.strip(), MiddleboxSpec.parse(spec)


def placements(values: tuple[str, ...] | list[str]) -> dict[str, MiddleboxSpec]:
    """Several --middlebox values; a slot named twice is one clear sentence."""
    out: dict[str, MiddleboxSpec] = {}
    for value in values:
        slot, spec = placement(value)
        if slot in out:
            raise MiddleboxError(f"slot {slot} is given two middleboxes")
        out[slot] = spec
    return out
