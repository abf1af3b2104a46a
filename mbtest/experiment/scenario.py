"""A scenario as data: from a TOML or JSON file, or from command-line options."""

from __future__ import annotations

import dataclasses
import json
import math
import re
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbtest.errors import MbtestError
from mbtest.middlebox.spec import MiddleboxSpec
from mbtest.verdict.expect import EXPECTATIONS

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")


class ScenarioError(MbtestError):
    """A scenario that cannot be run as written."""


@dataclass
class Scenario:
    name: str
    topology: str = "single-path"
    params: dict[str, Any] = field(default_factory=dict)
    middleboxes: dict[str, MiddleboxSpec] = field(default_factory=dict)  # slot -> behaviour
    expect: str = "mptcp-unaffected"
    checksums: bool = False
    ip_version: int = 4
    c2s_bytes: int = 300_000
    s2c_bytes: int = 300_000
    text: str | None = None
    port: int = 18080
    chunk: int = 65536
    connect_timeout: float = 10.0
    stall_timeout: float = 4.0
    deadline: float = 30.0

    def __post_init__(self) -> None:
        self._check_types()
        if self.expect not in EXPECTATIONS:
            known = ", ".join(sorted(EXPECTATIONS))
            raise ScenarioError(
                f"scenario {self.name}: unknown expectation {self.expect!r} (known: {known})"
            )
        if self.ip_version not in (4, 6):
            raise ScenarioError(f"scenario {self.name}: ip_version must be 4 or 6")
        # parsed once: a bad behaviour is reported before anything is built
        self.middleboxes = {
            slot: MiddleboxSpec.parse(spec) for slot, spec in self.middleboxes.items()
        }

    def _check_types(self) -> None:
        """Every field of the type and range it must have, or one sentence naming it."""
        where = f"scenario {self.name!r}" if isinstance(self.name, str) else "scenario"

        def bad(name: str, allowed: str) -> ScenarioError:
            value = getattr(self, name)
            return ScenarioError(f"{where}: {name} = {value!r} is not allowed: {allowed}")

        if not isinstance(self.name, str) or not NAME.fullmatch(self.name):
            raise bad("name", "1-64 letters, digits, '.', '_' or '-'")
        for name in ("topology", "expect"):
            if not isinstance(getattr(self, name), str):
                raise bad(name, "a string")
        for name in ("params", "middleboxes"):
            if not isinstance(getattr(self, name), dict):
                raise bad(name, "a table")
        if not isinstance(self.checksums, bool):
            raise bad("checksums", "true or false")
        for name, low, high in (("ip_version", 4, 6), ("c2s_bytes", 0, 1 << 40),
                                ("s2c_bytes", 0, 1 << 40), ("port", 1, 65535),
                                ("chunk", 1, 1 << 20)):  # fmt: skip
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise bad(name, f"an integer from {low} to {high}")
        for name, low, high in (("connect_timeout", 0.1, 600), ("stall_timeout", 0.1, 600),
                                ("deadline", 1, 3600)):  # fmt: skip
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or not low <= value <= high:
                raise bad(name, f"a number of seconds from {low:g} to {high:g}")
        if self.text is not None and (not isinstance(self.text, str) or not self.text):
            raise bad("text", "a non-empty string (or left out for random bytes)")

    @property
    def behaviours(self) -> set[str]:
        """The behaviour names in its slots ('none' for a baseline)."""
        return {spec.name for spec in self.middleboxes.values()} or {"none"}

    def to_json(self) -> dict[str, Any]:
        data = dataclasses.asdict(self)
        data["middleboxes"] = {slot: spec.text for slot, spec in self.middleboxes.items()}
        data["behaviours"] = sorted(spec.name for spec in self.middleboxes.values())
        return data


def from_dict(data: dict[str, Any], source: str = "scenario") -> Scenario:
    data = {k: v for k, v in data.items() if k != "behaviours"}  # derived, as to_json writes it
    known = {f.name for f in dataclasses.fields(Scenario)}
    extra = sorted(set(data) - known)
    if extra:
        raise ScenarioError(
            f"{source}: unknown key {extra[0]!r} (keys: {', '.join(sorted(known))})"
        )
    if "name" not in data:
        data = {**data, "name": Path(source).stem}
    try:
        return Scenario(**data)
    except TypeError as e:
        raise ScenarioError(f"{source}: {e}") from None


def load(path: str) -> Scenario:
    p = Path(path)
    if not p.exists():
        raise ScenarioError(f"scenario file {path} does not exist")
    if not p.is_file():
        raise ScenarioError(f"{path} is not a regular file (a directory, pipe or device)")
    try:
        text = p.read_text()
    except UnicodeDecodeError:
        raise ScenarioError(f"{path} is not a text file") from None
    except OSError as e:
        raise ScenarioError(f"{path} cannot be read: {e.strerror}") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ScenarioError(
            f"{p.name} is not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {e}"
        ) from None
    if not isinstance(data, dict):
        raise ScenarioError(f"{p.name} must hold a table of scenario keys")
    return from_dict(data, p.name)
