"""Files shipped inside the package (topologies, probes, templates, native source), found
beside the package's own code so that an installed wheel works from any directory (a wheel
installs them as files; importlib.resources would cost every command 10 ms of imports
before its first packet), and a user's own file given by path."""

from __future__ import annotations

import os
from pathlib import Path

import mbtest


def shipped(*parts: str) -> Path:
    """A file or folder shipped in the mbtest package (a wheel installs it as files)."""
    return Path(os.path.dirname(os.path.abspath(mbtest.__file__)), *parts)


def available(folder: Path, suffix: str) -> list[str]:
    return sorted(p.stem for p in folder.glob(f"*{suffix}") if not p.stem.startswith("_"))


def find(name_or_path: str, folder: Path, suffix: str, what: str, error: type[Exception]) -> Path:
    """folder/NAME.suffix, or the path given; `error` with one sentence when neither exists."""
    path = Path(name_or_path)
    if path.suffix == suffix or os.sep in name_or_path:
        if not path.exists():
            raise error(f"{what} file {name_or_path} does not exist")
        if not path.is_file():
            raise error(f"{what} file {name_or_path} is not a regular file")
        return path
    candidate = folder / f"{name_or_path}{suffix}"
    if not candidate.is_file():
        known = ", ".join(available(folder, suffix)) or "none"
        raise error(
            f"unknown {what} {name_or_path!r} (known: {known}, or a path to a {suffix} file)"
        )
    return candidate
