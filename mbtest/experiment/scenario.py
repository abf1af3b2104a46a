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
from mbtest.testbed.topology import KERNEL
from mbtest.verdict.expect import EXPECTATIONS

NAME = re.compile(r"[A-Za-z0-9._-]{1,64}(@[0-9A-Za-z.+~-]{1,64})?")  # name@kernel


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
    stall_timeout: float = 4.0  # only when evidence is off
    deadline: float = 60.0  # the bound on the transfer
    evidence: bool = True  # stalls decided from the senders' state
    hold: float = 0.0  # seconds the connection stays open after the transfer (for timers)
    hold_until: dict[str, dict[str, int]] = field(default_factory=dict)  # node -> counters
    announce: str = "at-start"  # or "late": the server announces once data has flowed
    sysctls: dict[str, dict[str, str]] = field(default_factory=dict)  # node -> sysctls
    offloads: bool = False  # keep segmentation offloads on (the kernel's default)
    kernel: str = "host"  # the endpoints' kernel: host (or as the topology says), or a VM's

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
            raise bad("name", "1-64 letters, digits, '.', '_' or '-' (then @kernel)")
        if not isinstance(self.kernel, str) or not KERNEL.fullmatch(self.kernel):
            raise bad("kernel", "host or a kernel version such as 6.1 (mbtest kernel ls)")
        for name in ("topology", "expect"):
            if not isinstance(getattr(self, name), str):
                raise bad(name, "a string")
        for name in ("params", "middleboxes"):
            if not isinstance(getattr(self, name), dict):
                raise bad(name, "a table")
        if not isinstance(self.checksums, bool):
            raise bad("checksums", "true or false")
        for name, low, high in (
            ("ip_version", 4, 6),
            ("c2s_bytes", 0, 1 << 40),
            ("s2c_bytes", 0, 1 << 40),
            ("port", 1, 65535),
            ("chunk", 1, 1 << 20),
        ):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
                raise bad(name, f"an integer from {low} to {high}")
        for name, low, high in (
            ("connect_timeout", 0.1, 600),
            ("stall_timeout", 0.1, 600),
            ("deadline", 1, 3600),
        ):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool)
            if not ok or not math.isfinite(value) or not low <= value <= high:
                raise bad(name, f"a number of seconds from {low:g} to {high:g}")
        if self.text is not None and (not isinstance(self.text, str) or not self.text):
            raise bad("text", "a non-empty string (or left out for random bytes)")
        for name in ("evidence", "offloads"):
            if not isinstance(getattr(self, name), bool):
                raise bad(name, "true or false")
        if (
            not isinstance(self.hold, (int, float))
            or isinstance(self.hold, bool)
            or not (0 <= self.hold <= 120 and math.isfinite(self.hold))
        ):
            raise bad("hold", "a number of seconds from 0 to 120")
        if self.announce not in ("at-start", "late"):
            raise bad("announce", "at-start or late")
        for name in ("hold_until", "sysctls"):
            table = getattr(self, name)
            ok = isinstance(table, dict) and all(
                isinstance(node, str)
                and isinstance(values, dict)
                and all(isinstance(k, str) for k in values)
                for node, values in table.items()
            )
            if not ok:
                raise bad(name, "a table of node = { name = value }")
        for values in self.hold_until.values():
            if not all(isinstance(v, int) and not isinstance(v, bool) for v in values.values()):
                raise bad("hold_until", "counter thresholds that are integers")
        for values in self.sysctls.values():
            for key, value in values.items():
                if not re.fullmatch(r"net\.[a-z0-9_.\-]+", key) or not re.fullmatch(
                    r"[0-9A-Za-z_.:\- ]{1,64}", str(value)
                ):
                    raise bad("sysctls", "net.* keys with plain values")

    def on_kernel(self, kernel: str) -> Scenario:
        """The same cell with its endpoints on ``kernel``, named name@kernel (unless host)."""
        base = self.name.partition("@")[0]
        name = base if kernel == "host" else f"{base}@{kernel}"
        return dataclasses.replace(self, name=name, kernel=kernel)

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
