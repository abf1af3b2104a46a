"""A scenario as data: from a TOML or JSON file, or from command-line options."""

from __future__ import annotations

import dataclasses
import json
import tomllib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mbtest.errors import MbtestError
from mbtest.middlebox.spec import MiddleboxSpec
from mbtest.verdict.expect import EXPECTATIONS


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
    try:
        text = p.read_text()
    except FileNotFoundError:
        raise ScenarioError(f"scenario file {path} does not exist") from None
    try:
        data = json.loads(text) if p.suffix == ".json" else tomllib.loads(text)
    except (ValueError, tomllib.TOMLDecodeError) as e:
        raise ScenarioError(
            f"{p.name} is not valid {'JSON' if p.suffix == '.json' else 'TOML'}: {e}"
        ) from None
    return from_dict(data, p.name)
