"""The ground-truth log a middlebox writes: one JSON line per change it made (or, for a
kernel middlebox, per change observed), each with the time and the behaviour's name."""

from __future__ import annotations

import json
import time
from typing import Any


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
