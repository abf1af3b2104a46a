"""The catalog: every behaviour defined in ``mbtest/middlebox/behaviours/``, found by walking
that package, so that adding a behaviour is adding its class."""

from __future__ import annotations

import importlib
import inspect
import pkgutil

from mbtest.middlebox import behaviours
from mbtest.middlebox.base import Behaviour
from mbtest.middlebox.params import MiddleboxError


def _discover() -> dict[str, type[Behaviour]]:
    found: dict[str, type[Behaviour]] = {}
    for module_info in sorted(pkgutil.iter_modules(behaviours.__path__), key=lambda m: m.name):
        module = importlib.import_module(f"{behaviours.__name__}.{module_info.name}")
        for _, cls in inspect.getmembers(module, inspect.isclass):
            if issubclass(cls, Behaviour) and cls.__module__ == module.__name__:
                name = getattr(cls, "NAME", None)
                if name is None:
                    continue
                if name in found and found[name] is not cls:
                    raise TypeError(f"two behaviours are named {name}")
                found[name] = cls
    return found


CATALOG: dict[str, type[Behaviour]] = _discover()


def get(name: str) -> type[Behaviour]:
    try:
        return CATALOG[name]
    except KeyError:
        raise MiddleboxError(
            f"unknown middlebox behaviour {name!r} (known: {', '.join(sorted(CATALOG))})"
        ) from None
