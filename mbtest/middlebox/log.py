"""The ground-truth log a middlebox writes: one JSON line per change it made (or, for a
kernel middlebox, per change observed), each with the time and the behaviour's name."""

from __future__ import annotations

import glob
import json
import os
import time
from typing import Any


def logs_in(folder: str) -> dict[str, list[dict[str, Any]]]:
    """slot -> its log's entries, for every ``middlebox-SLOT.jsonl`` in a folder (a line
    that is not a JSON object is left out: a log cut by a kill ends mid-line)."""
    out: dict[str, list[dict[str, Any]]] = {}
    for path in sorted(glob.glob(os.path.join(folder, "middlebox-*.jsonl"))):
        slot = os.path.basename(path)[len("middlebox-") : -len(".jsonl")]
        entries = []
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except (ValueError, RecursionError):
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
        out[slot] = entries
    return out


class Log:
    def __init__(self, path: str, behaviour_name: str):
        self.path = path
        self.file = open(path, "a", buffering=1 << 20)  # noqa: SIM115  (closed in close())
        self.prefix = '{"t": %.6f, "behaviour": ' + json.dumps(behaviour_name) + ", "
        self.encode = json.JSONEncoder().encode
        self.count = 0

    def write(self, entry: dict[str, Any]) -> None:
        """Buffered: the serve loop flushes after each burst of packets, close() at the end.
        The constant head of each line is formatted once (every-packet behaviours log a lot)."""
        self.file.write(self.prefix % time.time() + self.encode(entry)[1:] + "\n")
        self.count += 1

    def flush(self) -> None:
        self.file.flush()

    def close(self) -> None:
        self.file.close()
