"""Where results go: a fresh timestamped folder under a reports directory, with ``latest``
pointing at it, and result documents written whole or line by line."""

from __future__ import annotations

import contextlib
import datetime
import json
import os
import shutil
from collections.abc import Iterator
from typing import Any

from mbtest import jsondoc
from mbtest.host.paths import OutputError, output_dir

RESULT_FILES = ("run.json", "cell.json", "results.jsonl", "selfcheck.json", "matrix.json")


def new_report_dir(base: str = "reports") -> str:
    """BASE/<timestamp>/, with BASE/latest pointing at it."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, stamp)
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(base, f"{stamp}-{n}")
    try:
        os.makedirs(path)
    except OSError as e:
        raise OutputError(f"cannot create {path} for the results: {e.strerror}") from None
    _point_latest(base, os.path.basename(path))
    return path


def _point_latest(base: str, target: str | None) -> None:
    latest = os.path.join(base, "latest")
    if os.path.lexists(latest) and not os.path.islink(latest):
        return  # a user's own file or folder: never replaced
    with contextlib.suppress(OSError):
        if target is None:
            os.unlink(latest)
            return
        tmp = f"{latest}.{os.getpid()}.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(target, tmp)
        os.replace(tmp, latest)


def has_results(path: str) -> bool:
    """Whether a results folder holds a result document (at any depth: matrix cells)."""
    return any(any(name in RESULT_FILES for name in files) for _, _, files in os.walk(path))


@contextlib.contextmanager
def results_dir(given: str | None, base: str = "reports") -> Iterator[str]:
    """Where the results go: the folder given (checked first), or a new BASE/<timestamp>/
    with BASE/latest pointing at it. When the work fails before writing any result, a
    folder made here is removed again and latest points where it did before."""
    if given:
        output_dir(given, "-o")
        existed = os.path.isdir(given)
        os.makedirs(given, exist_ok=True)
        path, previous = given, None
    else:
        latest = os.path.join(base, "latest")
        previous = os.readlink(latest) if os.path.islink(latest) else None
        path, existed = new_report_dir(base), False
    try:
        yield path
    except BaseException:
        if not existed and not has_results(path):
            shutil.rmtree(path, ignore_errors=True)
            if not given:
                _point_latest(base, previous)
                with contextlib.suppress(OSError):
                    os.rmdir(base)  # only when it is empty: a reports/ made for nothing
        raise


def write_json(path: str, document: Any) -> None:
    with open(path, "w") as f:
        f.write(jsondoc.dumps(document, indent=2))


def write_lines(path: str, documents: list[Any]) -> None:
    with open(path, "w") as f:
        for document in documents:
            f.write(jsondoc.dumps(document) + "\n")


def append_line(path: str, document: Any) -> None:
    """One more line of a JSON-lines file, flushed: readers see each result as it ends."""
    with open(path, "a") as f:
        f.write(jsondoc.dumps(document) + "\n")


def read_lines(path: str) -> list[Any]:
    """The objects of a JSON-lines file (a line cut short by a crash is left out)."""
    out = []
    with open(path) as f:
        for line in f:
            with contextlib.suppress(ValueError):
                value = json.loads(line)
                if isinstance(value, dict):
                    out.append(value)
    return out


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)
