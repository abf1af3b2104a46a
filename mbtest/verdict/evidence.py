"""What a verdict is decided from: the run document, the middleboxes' ground-truth logs, and
the captures beside them (decoded once, on demand). Recorded runs without their captures
still give every fact that does not need packets."""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field
from typing import Any

from mbtest.errors import MbtestError
from mbtest.observe.decode import IcmpRecord, PacketRecord, capture_records, icmp_errors


@dataclass
class Evidence:
    doc: dict[str, Any]
    log: list[dict[str, Any]]
    folder: str | None = None  # where the captures are; None: documents only
    _records: dict[str, list[PacketRecord] | None] = field(default_factory=dict, repr=False)
    _icmp: dict[str, list[IcmpRecord]] = field(default_factory=dict, repr=False)

    @classmethod
    def of(cls, folder: str, doc: dict[str, Any]) -> Evidence:
        """The evidence of a run written in folder (its run.json already read)."""
        return cls(doc, middlebox_log(folder, doc), folder)

    def _path(self, name: str) -> str | None:
        if self.folder is None or name not in self.doc.get("captures", {}):
            return None
        path = os.path.join(self.folder, name)
        return path if os.path.isfile(path) else None

    def records(self, name: str) -> list[PacketRecord] | None:
        """Every TCP packet of a capture with its segment, or None when it is not there."""
        if name not in self._records:
            path = self._path(name)
            try:
                self._records[name] = None if path is None else capture_records(path)
            except MbtestError:
                self._records[name] = None
        return self._records[name]

    def icmp(self, name: str) -> list[IcmpRecord]:
        if name not in self._icmp:
            path = self._path(name)
            try:
                self._icmp[name] = [] if path is None else list(icmp_errors(path))
            except MbtestError:
                self._icmp[name] = []
        return self._icmp[name]

    @property
    def has_captures(self) -> bool:
        return any(self._path(name) for name in self.doc.get("captures", {}))


def middlebox_log(folder: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    """Every ground-truth log entry of the run's middleboxes (unreadable lines left out)."""
    entries = []
    for mb in doc.get("middleboxes", {}).values():
        path = os.path.join(folder, mb["log"]) if not os.path.isabs(mb["log"]) else mb["log"]
        if not os.path.exists(path):
            continue
        with open(path, errors="replace") as f:
            for line in f:
                try:
                    entry = json.loads(line)
                except ValueError:
                    continue
                if isinstance(entry, dict):
                    entries.append(entry)
    return entries
