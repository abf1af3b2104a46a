"""Probe files: ``mbtest/probes/NAME.py`` or any path, each defining ``NAME`` and
``build(session)``.

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


class ProbeFileError(MbtestError):
    """A probe name that is unknown or a probe file that cannot be used."""


@dataclass(frozen=True)
class ProbeSpec:
    name: str
    summary: str
    path: str
    build: Callable[[Any], Any]


def available() -> list[str]:
    return datafiles.available(PROBE_DIR, ".py")


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
    build = getattr(module, "build", None)
    if not callable(build):
        raise ProbeFileError(f"probe file {path} defines no build(session) function")
    name = getattr(module, "NAME", path.stem)
    if not isinstance(name, str) or not name:
        raise ProbeFileError(f"probe file {path}: NAME must be a non-empty string")
    summary = (module.__doc__ or "").strip().splitlines()
    return ProbeSpec(name, summary[0] if summary else "", str(path), build)
