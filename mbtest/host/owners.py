"""Who owns what mbtest created: one record per run, naming its owner process by pid *and*
start time (a reused pid is another process), and what it made (namespaces, folders).

A record is written before the first thing it names is created, and removed after the last
thing is gone, so that whatever a SIGKILL interrupts is found by ``mbtest cleanup``, which
removes only what belongs to dead owners. A persistent record (``topo up``) belongs to the
user until ``topo down``: it is never an orphan.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import time
from dataclasses import asdict, dataclass, field
from typing import Any

from mbtest.errors import MbtestError

STATE_DIR = "/run/mbtest"
RUN_ID = re.compile(r"[0-9a-f]{6}")
_RECORD_SUFFIX = ".owner.json"


CHILDREN: set[int] = set()  # processes this one started that may own records (matrix cells)


class RunIdError(MbtestError):
    """A string given as a run id that is not one."""


def new_run_id() -> str:
    """A short id that prefixes every name one run creates, so parallel runs never collide."""
    return os.urandom(3).hex()  # (not `secrets`: its imports cost every command 5 ms)


def check_run_id(text: str) -> str:
    """The run id, or one sentence: nothing outside mbtest's own state is ever named."""
    if not isinstance(text, str) or not RUN_ID.fullmatch(text):
        raise RunIdError(
            f"{text!r} is not a run id (six hexadecimal digits, as mbtest topo ls shows)"
        )
    return text


def start_time(pid: int) -> int | None:
    """When a process started (clock ticks since boot, /proc/PID/stat field 22)."""
    try:
        with open(f"/proc/{pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
    except (OSError, IndexError):
        return None
    if fields[0] == "Z":  # a zombie has finished
        return None
    try:
        return int(fields[19])
    except (IndexError, ValueError):
        return None


def process_alive(pid: int, started: int | None) -> bool:
    """Whether the process that started at ``started`` still runs as ``pid``."""
    now = start_time(pid)
    return now is not None and (started is None or now == started)


@dataclass
class Owner:
    """One run's record: who owns it and what it created."""

    run_id: str
    kind: str  # testbed, probe...
    pid: int = field(default_factory=os.getpid)
    started: int | None = None  # the owner's start time; filled in from /proc
    persistent: bool = False  # topo up: the user's until topo down
    created: float = field(default_factory=time.time)
    namespaces: dict[str, str] = field(default_factory=dict)  # node -> namespace
    folders: list[str] = field(default_factory=list)  # state folders the run made
    about: dict[str, Any] = field(default_factory=dict)  # topology, middleboxes... for ls

    def __post_init__(self) -> None:
        check_run_id(self.run_id)
        if self.started is None:
            self.started = start_time(self.pid)

    @property
    def path(self) -> str:
        return os.path.join(STATE_DIR, self.run_id + _RECORD_SUFFIX)

    @property
    def alive(self) -> bool:
        """A persistent record is always the user's; another one lives with its process."""
        return self.persistent or process_alive(self.pid, self.started)

    @property
    def age(self) -> float:
        return max(0.0, time.time() - self.created)

    def save(self) -> None:
        """Write the record atomically (a reader never sees half of it)."""
        os.makedirs(STATE_DIR, exist_ok=True)
        tmp = f"{self.path}.{os.getpid()}.tmp"
        with open(tmp, "w") as f:
            json.dump(asdict(self), f)
        os.replace(tmp, self.path)

    def forget(self) -> None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)

    def state_folder(self) -> str:
        """/run/mbtest/<run id>/, recorded so that it goes with the run."""
        path = os.path.join(STATE_DIR, self.run_id)
        if path not in self.folders:
            self.folders.append(path)
            self.save()
        os.makedirs(path, exist_ok=True)
        return path


def records(kind: str | None = None) -> list[Owner]:
    """Every run recorded on this machine (of one kind), oldest first."""
    out = []
    try:
        names = sorted(os.listdir(STATE_DIR))
    except FileNotFoundError:
        return []
    for name in names:
        if not name.endswith(_RECORD_SUFFIX) or not RUN_ID.fullmatch(name[: -len(_RECORD_SUFFIX)]):
            continue
        with contextlib.suppress(OSError, ValueError, TypeError, MbtestError):
            with open(os.path.join(STATE_DIR, name)) as f:
                data = json.load(f)
            owner = Owner(**data)
            if kind is None or owner.kind == kind:
                out.append(owner)
    return sorted(out, key=lambda o: o.created)


def find(run_id: str) -> Owner | None:
    check_run_id(run_id)
    return next((o for o in records() if o.run_id == run_id), None)
