"""Probe files: ``mbtest/probes/NAME.py`` or any path, each defining ``NAME`` and either
``build(session)`` (a path probe, swept over the TTLs) or, with ``SUITE = "conformance"``,
``exercise`` and ``judge`` (see ``mbtest.probe.conform``).

See mbtest/probes/README.md for the API. A file that does not load or lacks the API is one clear
sentence, before anything is sent.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mbtest.errors import MbtestError
from mbtest.host import datafiles

PROBE_DIR = datafiles.shipped("probes")
DEFAULT = ("plain_syn", "mp_capable", "mp_capable_v0", "mp_join", "dss", "add_addr")
SUITES = ("path", "conformance")


class ProbeFileError(MbtestError):
    """A probe name that is unknown or a probe file that cannot be used."""


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    summary: str
    path: str
    build: Callable[[Any], Any] | None
    suite: str = "path"
    module: Any = None  # a conformance probe's module: exercise, judge, OUTCOMES, RFC, QUOTE


def available() -> list[str]:
    return datafiles.available(PROBE_DIR, ".py")


def suite(name: str) -> tuple[str, ...]:
    """The probes a suite runs: the path suite is the default run; the conformance suite is
    every shipped probe that says it belongs there."""
    if name not in SUITES:
        raise ProbeFileError(f"unknown suite {name!r} (known: {', '.join(SUITES)})")
    if name == "path":
        return DEFAULT
    return tuple(p for p in available() if load(p).suite == name)


def find(name_or_path: str) -> Path:
    return datafiles.find(name_or_path, PROBE_DIR, ".py", "probe", ProbeFileError)


def load(name_or_path: str) -> ProbeSpec:
    path = find(name_or_path)
    module_name = f"mbtest_probe_{path.stem}_{abs(hash(str(path.resolve())))}"
    try:
        spec = importlib.util.spec_from_file_location(module_name, path)
        if spec is None or spec.loader is None:
            raise ProbeFileError(f"probe file {path} cannot be loaded")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    except ProbeFileError:
        raise
    except SyntaxError as e:
        raise ProbeFileError(f"probe file {path} line {e.lineno}: {e.msg}") from None
    except Exception as e:
        raise ProbeFileError(f"probe file {path} fails to load: {type(e).__name__}: {e}") from None
    name = getattr(module, "NAME", path.stem)
    if not isinstance(name, str) or not name:
        raise ProbeFileError(f"probe file {path}: NAME must be a non-empty string")
    summary = (module.__doc__ or "").strip().splitlines()
    summary_line = summary[0] if summary else ""
    kind = getattr(module, "SUITE", "path")
    if kind == "conformance":
        _check_conformance(module, path)
        return ProbeSpec(name, summary_line, str(path), None, kind, module)
    if kind != "path":
        raise ProbeFileError(f"probe file {path}: SUITE must be one of {', '.join(SUITES)}")
    build = getattr(module, "build", None)
    if not callable(build):
        raise ProbeFileError(f"probe file {path} defines no build(session) function")
    return ProbeSpec(name, summary_line, str(path), build)


def _check_conformance(module: Any, path: Path) -> None:
    for function in ("exercise", "judge"):
        if not callable(getattr(module, function, None)):
            raise ProbeFileError(f"conformance probe {path} defines no {function}() function")
    for text in ("RFC", "QUOTE"):
        if not isinstance(getattr(module, text, None), str):
            raise ProbeFileError(f"conformance probe {path}: {text} must be a string")
    outcomes = getattr(module, "OUTCOMES", None)
    good = isinstance(outcomes, dict) and all(
        isinstance(v, tuple) and len(v) == 2 and v[0] in ("as-expected", "permitted-variant")
        for v in outcomes.values()
    )
    if not good:
        raise ProbeFileError(
            f"conformance probe {path}: OUTCOMES must map outcome names to "
            "(as-expected or permitted-variant, why)"
        )
