"""The catalog: every behaviour by name, and building one from a specification."""

from __future__ import annotations

from typing import Any

from mbtest.middlebox.base import Behaviour
from mbtest.middlebox.behaviours import USERSPACE
from mbtest.middlebox.kernel import KERNEL
from mbtest.middlebox.params import MiddleboxError, parse_spec
from mbtest.middlebox.proxy import TransparentProxy
from mbtest.middlebox.reshape import RESHAPE

CATALOG: dict[str, type[Behaviour]] = {
    cls.NAME: cls for cls in (*USERSPACE, *RESHAPE, *KERNEL, TransparentProxy)
}


def get(name: str) -> type[Behaviour]:
    try:
        return CATALOG[name]
    except KeyError:
        raise MiddleboxError(
            f"unknown middlebox behaviour {name!r} (known: {', '.join(sorted(CATALOG))})"
        ) from None


def build(spec: str | dict[str, Any]) -> Behaviour:
    """A behaviour from ``NAME:key=value,...`` or a table {behaviour = NAME, key = value}."""
    if isinstance(spec, dict):
        params = dict(spec)
        name = params.pop("behaviour", None)
        if not isinstance(name, str):
            raise MiddleboxError("a middlebox table needs behaviour = NAME")
    else:
        name, params = parse_spec(spec)
    return get(name)(params)
