"""The matrix: running cells in parallel, each in its own namespaces and its own process so
that one stuck or crashed cell never takes the others with it; its results, summary and
report."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from typing import Any

from mbtest.experiment import output, repeats
from mbtest.experiment.cell import SCHEMA as CELL_SCHEMA
from mbtest.experiment.scenario import Scenario
from mbtest.host import cleanup, owners, signals
from mbtest.report.render import render
from mbtest.verdict.decide import FINDINGS

SCHEMA = "mbtest.matrix/1"


def run_cells(
    cells: list[Scenario],
    out_dir: str,
    jobs: int,
    on_done: Callable[[dict[str, Any]], None] = lambda r: None,
    repeat: int = 1,
) -> list[dict[str, Any]]:
    """Run each cell ``repeat`` times, each run in a child process (at most ``jobs`` at
    once); one result per cell, in grid order (repeats say whether they agree).

    On Ctrl-C or SIGTERM the running children are told to stop (they tear their testbeds
    down and say ``not-run``), those that do not in time are killed and what they left is
    removed, and the results finished so far are kept."""
    os.makedirs(out_dir, exist_ok=True)
    pending = [(index, run) for index in range(len(cells)) for run in range(1, repeat + 1)]
    running: dict[tuple[int, int], tuple[subprocess.Popen, str, float]] = {}
    runs: dict[int, dict[int, dict[str, Any]]] = {}
    results: dict[int, dict[str, Any]] = {}

    def cell_dir(index: int) -> str:
        return os.path.join(out_dir, f"{index:03d}-{cells[index].name}")

    def run_dir(index: int, run: int) -> str:
        return cell_dir(index) if repeat == 1 else os.path.join(cell_dir(index), f"run-{run}")

    def finish(key: tuple[int, int], proc: subprocess.Popen, folder: str, stopped: bool = False):
        index, run = key
        cleanup.remove_owned_by({proc.pid})  # a cell that died without tearing down
        runs.setdefault(index, {})[run] = _collect(cells[index], proc, folder, stopped)
        if len(runs[index]) == repeat:
            results[index] = repeats.aggregate(
                [runs[index][r] for r in sorted(runs[index])], os.path.basename(cell_dir(index))
            )
            if repeat > 1:
                output.write_json(os.path.join(cell_dir(index), "cell.json"), results[index])
            on_done(results[index])

    try:
        while pending or running:
            while pending and len(running) < jobs:
                key = pending.pop(0)
                folder = run_dir(*key)
                os.makedirs(folder, exist_ok=True)
                scenario_file = os.path.join(folder, "scenario.json")
                output.write_json(scenario_file, cells[key[0]].to_json())
                argv = [sys.executable, "-m", "mbtest.experiment.cell", scenario_file, folder]
                with signals.deferred():  # started and recorded, or neither
                    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    running[key] = (proc, folder, time.monotonic())
                    owners.CHILDREN.add(proc.pid)
            time.sleep(0.05)
            signals.check()
            for key, (proc, folder, started) in list(running.items()):
                limit = cells[key[0]].deadline + cells[key[0]].hold + 60
                if proc.poll() is None and time.monotonic() - started > limit:
                    proc.send_signal(signal.SIGTERM)  # a cell past its bound is ended
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(30)
                if proc.poll() is None:
                    continue
                del running[key]
                finish(key, proc, folder)
    finally:  # stopped early (Ctrl-C, SIGTERM): stop the running cells, keep what finished
        with signals.deferred():
            for proc, _, _ in running.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            for key, (proc, folder, _) in running.items():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
                finish(key, proc, folder, stopped=True)
            for key in pending:  # never started
                index, run = key
                runs.setdefault(index, {})[run] = _not_run(
                    cells[index], "the matrix was stopped before this cell ran", run_dir(*key)
                )
            for index, done in runs.items():  # cells some of whose runs never happened
                if index not in results:
                    results[index] = repeats.aggregate(
                        [done[r] for r in sorted(done)], os.path.basename(cell_dir(index))
                    )
                    on_done(results[index])
    return [results[i] for i in sorted(results)]


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
    cell: Scenario, proc: subprocess.Popen, cell_dir: str, stopped: bool = False
) -> dict[str, Any]:
    err = proc.stderr.read().decode(errors="replace").strip() if proc.stderr else ""
    if proc.stderr:
        proc.stderr.close()
    path = os.path.join(cell_dir, "cell.json")
    try:
        with open(path) as f:
            result = json.load(f)
    except (OSError, ValueError):
        why = (
            err.splitlines()[-1]
            if err
            else f"the cell exited with {proc.returncode} and wrote no result"
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
    """0 nothing to report, 1 findings (deviates, flaky, inconclusive), 2 harness errors."""
    verdicts = {r["verdict"] for r in results}
    if "error" in verdicts:
        return 2
    if verdicts & set(FINDINGS):
        return 1
    return 0


def run_matrix(
    cells: list[Scenario],
    out_dir: str,
    jobs: int,
    on_done: Callable[[dict[str, Any]], None] = lambda r: None,
    command: str = "",
    repeat: int = 1,
) -> tuple[list[dict[str, Any]], str]:
    """Run the cells, write results.jsonl, matrix.json and report.html into out_dir (also
    when interrupted: what finished is kept); the results and the report's path."""
    started = time.time()
    finished: list[dict[str, Any]] = []

    def done(result: dict[str, Any]) -> None:
        finished.append(result)
        on_done(result)

    try:
        run_cells(cells, out_dir, jobs, done, repeat)
    finally:  # on Ctrl-C too: what finished is kept
        with signals.deferred():
            results = sorted(finished, key=lambda r: r["dir"])
            meta = write_results(out_dir, results, started, jobs, command, repeat)
    meta["started_text"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    report = render([out_dir], os.path.join(out_dir, "report.html"), meta)
    return results, report


def write_results(
    out_dir: str,
    results: list[dict[str, Any]],
    started: float,
    jobs: int,
    command: str,
    repeat: int = 1,
) -> dict[str, Any]:
    output.write_lines(os.path.join(out_dir, "results.jsonl"), results)
    meta = {
        "schema": SCHEMA,
        "started": started,
        "seconds": round(time.time() - started, 2),
        "jobs": jobs,
        "repeat": repeat,
        "cells": len(results),
        "verdicts": summary(results),
        "command": command,
        "kernel": os.uname().release,
    }
    output.write_json(os.path.join(out_dir, "matrix.json"), meta)
    return meta
