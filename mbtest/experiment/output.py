"""Where results go: a fresh timestamped folder under a reports directory, with ``latest``
pointing at it, and result documents written whole or line by line."""

from __future__ import annotations

import datetime
import json
import os
from typing import Any


def new_report_dir(base: str = "reports") -> str:
    """BASE/<timestamp>/, with BASE/latest pointing at it."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, stamp)
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(base, f"{stamp}-{n}")
    os.makedirs(path)
    latest = os.path.join(base, "latest")
    if os.path.islink(latest) or not os.path.exists(latest):
        tmp = f"{latest}.{os.getpid()}.tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.basename(path), tmp)
        os.replace(tmp, latest)
    return path


def write_json(path: str, document: Any) -> None:
    with open(path, "w") as f:
        json.dump(document, f, indent=2)


def write_lines(path: str, documents: list[Any]) -> None:
    with open(path, "w") as f:
        for document in documents:
            f.write(json.dumps(document) + "\n")


def read_json(path: str) -> Any:
    with open(path) as f:
        return json.load(f)
