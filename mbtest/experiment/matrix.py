"""The matrix: running cells in parallel, each in its own namespaces and its own process so
that one stuck or crashed cell never takes the others with it; its results, summary and
report."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from mbtest import errors
from mbtest.errors import MbtestError
from mbtest.experiment import output, repeats, vmpool, workers
from mbtest.experiment.cell import SCHEMA as CELL_SCHEMA
from mbtest.experiment.scenario import Scenario
from mbtest.host import cleanup, environment, owners, signals
from mbtest.jsondoc import is_schema, schema
from mbtest.report.render import render
from mbtest.verdict.decide import FINDINGS

SCHEMA = schema("matrix")


def run_cells(
    cells: list[Scenario],
    out_dir: str,
    jobs: int,
    on_done: Callable[[dict[str, Any]], None] = lambda r: None,
    repeat: int = 1,
    positions: list[int] | None = None,
) -> list[dict[str, Any]]:
    """Run each cell ``repeat`` times, each run in a child process (at most ``jobs`` at
    once); one result per cell, in grid order (repeats say whether they agree). A cell's
    folder is named by its position in the whole selection (``positions``; by default its
    index here), so that shards and resumed runs name the same cell the same way.

    On Ctrl-C or SIGTERM the running children are told to stop (they tear their testbeds
    down and say ``not-run``), those that do not in time are killed and what they left is
    removed, and the results finished so far are kept."""
    os.makedirs(out_dir, exist_ok=True)
    pending = [(index, run) for index in range(len(cells)) for run in range(1, repeat + 1)]
    running: dict[tuple[int, int], tuple[workers.CellProcess, str, float]] = {}
    runs: dict[int, dict[int, dict[str, Any]]] = {}
    results: dict[int, dict[str, Any]] = {}

    where = positions if positions is not None else list(range(len(cells)))

    def cell_dir(index: int) -> str:
        return os.path.join(out_dir, cell_folder(where[index], cells[index].name))

    def run_dir(index: int, run: int) -> str:
        return cell_dir(index) if repeat == 1 else os.path.join(cell_dir(index), f"run-{run}")

    def finish(
        key: tuple[int, int],
        proc: workers.CellProcess,
        folder: str,
        started: float,
        stopped: bool = False,
    ) -> None:
        index, run = key
        cleanup.remove_owned_by({proc.pid})  # a cell that died without tearing down
        pool.back(folder)  # (its VM, if it borrowed one: idle again, or stopped)
        runs.setdefault(index, {})[run] = _collect(cells[index], proc, folder, stopped)
        timings = runs[index][run].setdefault("timings", {})  # start to exit, seen from here
        timings["wall"] = round(time.monotonic() - started, 4)
        if len(runs[index]) == repeat:
            results[index] = repeats.aggregate(
                [runs[index][r] for r in sorted(runs[index])], os.path.basename(cell_dir(index))
            )
            if repeat > 1:
                output.write_json(os.path.join(cell_dir(index), "cell.json"), results[index])
            on_done(results[index])

    pool = vmpool.Pool(jobs=jobs)  # warm VMs for cells on other kernels
    try:
        pool.plan([cells[index] for index, _ in pending])
        workers.warm()
        while pending or running:
            while pending and len(running) < jobs:
                key = pending.pop(0)
                folder = run_dir(*key)
                os.makedirs(folder, exist_ok=True)
                scenario_file = os.path.join(folder, "scenario.json")
                output.write_json(scenario_file, cells[key[0]].to_json())
                started = time.monotonic()
                try:
                    pool.lend(cells[key[0]], folder)
                    lent = None
                except MbtestError as e:  # the cell is an error saying why
                    lent = workers.NotStarted(f"its VM did not start: {e}")
                except BaseException:  # (stopped while a VM booted: the cell is not-run)
                    pending.insert(0, key)
                    raise
                with signals.deferred():  # started and recorded, or neither
                    proc = lent or workers.start(scenario_file, folder)
                    running[key] = (proc, folder, started)
                    owners.CHILDREN.add(proc.pid)
            workers.wait_any([proc for proc, _, _ in running.values()], 0.05)
            signals.check()
            for key, (proc, folder, started) in list(running.items()):
                limit = cells[key[0]].deadline + cells[key[0]].hold + 60
                if proc.poll() is None and time.monotonic() - started > limit:
                    proc.terminate()  # a cell past its bound is ended
                    proc.wait(30)
                if proc.poll() is None:
                    continue
                del running[key]
                finish(key, proc, folder, started)
                pool.retire([cells[i] for i, _ in [*pending, *running]])
    finally:  # stopped early (Ctrl-C, SIGTERM): stop the running cells, keep what finished
        with signals.deferred():
            for proc, _, _ in running.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.terminate()
            for key, (proc, folder, started) in running.items():
                if proc.wait(30) is None:
                    proc.kill()
                    proc.wait(10)
                finish(key, proc, folder, started, stopped=True)
            for key in pending:  # never started
                index, run = key
                runs.setdefault(index, {})[run] = _not_run(
                    cells[index], "the matrix was stopped before this cell ran", run_dir(*key)
                )
            pool.stop()
            for index, done in runs.items():  # cells some of whose runs never happened
                if index not in results:
                    results[index] = repeats.aggregate(
                        [done[r] for r in sorted(done)], os.path.basename(cell_dir(index))
                    )
                    on_done(results[index])
    return [results[i] for i in sorted(results)]


def cell_folder(position: int, name: str) -> str:
    return f"{position:03d}-{name}"


def _not_run(cell: Scenario, why: str, cell_dir: str) -> dict[str, Any]:
    return {
        "schema": CELL_SCHEMA,
        "scenario": cell.to_json(),
        "verdict": "not-run",
        "why": [why],
        "facts": {},
        "dir": os.path.basename(cell_dir),
    }


def _collect(
    cell: Scenario, proc: workers.CellProcess, cell_dir: str, stopped: bool = False
) -> dict[str, Any]:
    err = proc.error()
    path = os.path.join(cell_dir, "cell.json")
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, ValueError):
        why = (
            err.splitlines()[-1]
            if err
            else f"the cell exited with {proc.poll()} and wrote no result"
        )
        if stopped:
            return _not_run(cell, "stopped with the matrix before it wrote a result", cell_dir)
        result = {
            "schema": CELL_SCHEMA,
            "scenario": cell.to_json(),
            "verdict": "error",
            "why": [why],
            "facts": {},
        }
    result["dir"] = os.path.basename(cell_dir)
    return result


def summary(results: list[dict[str, Any]]) -> dict[str, int]:
    return dict(Counter(r["verdict"] for r in results))


def exit_status(results: list[dict[str, Any]]) -> int:
    """0 nothing to report, 1 findings (deviates, flaky, inconclusive), 3 harness errors."""
    verdicts = {r["verdict"] for r in results}
    if "error" in verdicts:
        return errors.HARNESS
    if verdicts & set(FINDINGS):
        return errors.FINDINGS
    return errors.OK


@dataclass
class Plan:
    """What a matrix run covers: the cells of the whole selection (in grid order), the part
    this run takes (a shard), and how; recorded in matrix.json so that a stopped run can
    be resumed and shards merged."""

    selection: list[Scenario]
    shard: tuple[int, int] = (1, 1)  # (i, n): every n-th cell from the i-th
    jobs: int = 2
    repeat: int = 1
    filters: dict[str, Any] = field(default_factory=dict)
    command: str = ""

    @property
    def positions(self) -> list[int]:
        i, n = self.shard
        return [p for p in range(len(self.selection)) if p % n == i - 1]

    @property
    def cells(self) -> list[Scenario]:
        return [self.selection[p] for p in self.positions]


def shard_of(text: str) -> tuple[int, int]:
    """'2/3' -> (2, 3); MbtestError for anything else."""
    first, sep, second = text.partition("/")
    if sep and first.isdigit() and second.isdigit() and 1 <= int(first) <= int(second) <= 1000:
        return int(first), int(second)
    raise MbtestError(f"--shard {text!r}: give I/N with 1 <= I <= N, e.g. 2/3")


def run_matrix(
    plan: Plan,
    out_dir: str,
    on_done: Callable[[dict[str, Any]], None] = lambda r: None,
    done_before: list[dict[str, Any]] | None = None,
) -> tuple[list[dict[str, Any]], str]:
    """Run the plan's cells into out_dir: matrix.json first (the plan and the environment),
    each cell's line appended to results.jsonl as it finishes, report.html at the end
    (also when interrupted: what finished is kept). ``done_before``: results of a run
    being resumed, whose cells are not run again. The results and the report's path."""
    started = time.time()
    done_before = list(done_before or [])
    finished_names = {r["scenario"]["name"] for r in done_before}
    todo = [(p, c) for p, c in zip(plan.positions, plan.cells, strict=True)]
    todo = [(p, c) for p, c in todo if c.name not in finished_names]
    meta = _meta(plan, started)
    output.write_json(os.path.join(out_dir, "matrix.json"), meta)
    results_path = os.path.join(out_dir, "results.jsonl")
    output.write_lines(results_path, done_before)  # a resumed run keeps what it had
    finished: list[dict[str, Any]] = list(done_before)

    def done(result: dict[str, Any]) -> None:
        with signals.deferred():
            output.append_line(results_path, result)
            finished.append(result)
        on_done(result)

    try:
        run_cells(
            [c for _, c in todo],
            out_dir,
            plan.jobs,
            done,
            plan.repeat,
            positions=[p for p, _ in todo],
        )
    finally:  # on Ctrl-C too: what finished is kept, and said to be incomplete
        with signals.deferred():
            results = sorted(finished, key=lambda r: r.get("dir", ""))
            meta.update(
                seconds=round(time.time() - started, 2),
                verdicts=summary(results),
                complete=len(results) == len(plan.cells)
                and all(r["verdict"] != "not-run" for r in results),
            )
            output.write_json(os.path.join(out_dir, "matrix.json"), meta)
    report = render([out_dir], os.path.join(out_dir, "report.html"))
    return results, report


def _meta(plan: Plan, started: float) -> dict[str, Any]:
    i, n = plan.shard
    return {
        "schema": SCHEMA,
        "started": started,
        "command": plan.command,
        "environment": environment.host(plan.command),
        "jobs": plan.jobs,
        "repeat": plan.repeat,
        "filters": plan.filters,
        "selection": [c.name for c in plan.selection],
        "shard": f"{i}/{n}",
        "cells": [c.name for c in plan.cells],
        "complete": False,
    }


def resume(out_dir: str, grid: list[Scenario]) -> tuple[Plan, list[dict[str, Any]]]:
    """The plan of a stopped run in out_dir and the results it has (not-run ones dropped, so
    that those cells run again); MbtestError when out_dir holds no matrix run to resume."""
    meta_path = os.path.join(out_dir, "matrix.json")
    try:
        meta = output.read_json(meta_path)
    except (OSError, ValueError):
        raise MbtestError(
            f"{out_dir} holds no matrix run to resume (no readable matrix.json)"
        ) from None
    if not isinstance(meta, dict) or not is_schema(meta.get("schema"), "matrix"):
        raise MbtestError(f"{meta_path} is not an mbtest matrix description")
    if "selection" not in meta:
        raise MbtestError(f"{meta_path} was written by a version that cannot be resumed")
    by_name = {c.name: c for c in grid}
    for name in meta["selection"]:  # cells on other kernels: name@kernel
        base, _, kernel = name.partition("@")
        if kernel and base in by_name:
            by_name[name] = by_name[base].on_kernel(kernel)
    missing = [name for name in meta["selection"] if name not in by_name]
    if missing:
        raise MbtestError(f"cell {missing[0]!r} of {out_dir} is no longer in the matrix")
    plan = Plan(
        selection=[by_name[name] for name in meta["selection"]],
        shard=shard_of(meta.get("shard", "1/1")),
        jobs=int(meta.get("jobs", 2)),
        repeat=int(meta.get("repeat", 1)),
        filters=meta.get("filters", {}),
    )
    have: list[dict[str, Any]] = []
    results_path = os.path.join(out_dir, "results.jsonl")
    if os.path.exists(results_path):
        for line in output.read_lines(results_path):
            if line.get("verdict") != "not-run":
                have.append(line)
            elif isinstance(line.get("dir"), str) and os.sep not in line["dir"]:
                folder = os.path.join(out_dir, line["dir"])  # started, never finished
                if os.path.isdir(folder) and not os.path.islink(folder):
                    shutil.rmtree(folder)
    return plan, have
