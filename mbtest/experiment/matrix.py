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

from mbtest.experiment import output
from mbtest.experiment.cell import SCHEMA as CELL_SCHEMA
from mbtest.experiment.scenario import Scenario
from mbtest.host import cleanup, owners, signals
from mbtest.report.render import render

SCHEMA = "mbtest.matrix/1"


def run_cells(
    cells: list[Scenario],
    out_dir: str,
    jobs: int,
    on_done: Callable[[dict[str, Any]], None] = lambda r: None,
) -> list[dict[str, Any]]:
    """Run each cell in a child process (at most ``jobs`` at once); results in grid order.

    On Ctrl-C or SIGTERM the running children are told to stop (they tear their testbeds
    down and say ``not-run``), those that do not in time are killed and what they left is
    removed, and the results finished so far are kept."""
    os.makedirs(out_dir, exist_ok=True)
    pending = list(enumerate(cells))
    running: dict[int, tuple[subprocess.Popen, str, float]] = {}
    results: dict[int, dict[str, Any]] = {}

    def finish(index: int, proc: subprocess.Popen, cell_dir: str, stopped: bool = False) -> None:
        cleanup.remove_owned_by({proc.pid})  # a cell that died without tearing down
        results[index] = _collect(cells[index], proc, cell_dir, stopped)
        on_done(results[index])

    try:
        while pending or running:
            while pending and len(running) < jobs:
                index, cell = pending.pop(0)
                cell_dir = os.path.join(out_dir, f"{index:03d}-{cell.name}")
                os.makedirs(cell_dir, exist_ok=True)
                output.write_json(os.path.join(cell_dir, "scenario.json"), cell.to_json())
                argv = [
                    sys.executable,
                    "-m",
                    "mbtest.experiment.cell",
                    os.path.join(cell_dir, "scenario.json"),
                    cell_dir,
                ]
                with signals.deferred():  # started and recorded, or neither
                    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                    running[index] = (proc, cell_dir, time.monotonic())
                    owners.CHILDREN.add(proc.pid)
            time.sleep(0.05)
            signals.check()
            for index, (proc, cell_dir, started) in list(running.items()):
                limit = cells[index].deadline + 60
                if proc.poll() is None and time.monotonic() - started > limit:
                    proc.send_signal(signal.SIGTERM)  # a cell past its deadline is ended
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(30)
                if proc.poll() is None:
                    continue
                del running[index]
                finish(index, proc, cell_dir)
    finally:  # stopped early (Ctrl-C, SIGTERM): stop the running cells, keep what finished
        with signals.deferred():
            for proc, _, _ in running.values():
                with contextlib.suppress(ProcessLookupError):
                    proc.send_signal(signal.SIGTERM)
            for index, (proc, cell_dir, _) in running.items():
                try:
                    proc.wait(30)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(10)
                finish(index, proc, cell_dir, stopped=True)
            for index, cell in pending:  # never started
                where = os.path.join(out_dir, f"{index:03d}-{cell.name}")
                results[index] = _not_run(
                    cell, "the matrix was stopped before this cell ran", where
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
    verdicts = {r["verdict"] for r in results}
    if "error" in verdicts:
        return 2
    if verdicts - {"as-expected"}:
        return 1
    return 0


def run_matrix(
    cells: list[Scenario],
    out_dir: str,
    jobs: int,
    on_done: Callable[[dict[str, Any]], None] = lambda r: None,
    command: str = "",
) -> tuple[list[dict[str, Any]], str]:
    """Run the cells, write results.jsonl, matrix.json and report.html into out_dir (also
    when interrupted: what finished is kept); the results and the report's path."""
    started = time.time()
    finished: list[dict[str, Any]] = []

    def done(result: dict[str, Any]) -> None:
        finished.append(result)
        on_done(result)

    try:
        run_cells(cells, out_dir, jobs, done)
    finally:  # on Ctrl-C too: what finished is kept
        with signals.deferred():
            results = sorted(finished, key=lambda r: r["dir"])
            meta = write_results(out_dir, results, started, jobs, command)
    meta["started_text"] = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(started))
    report = render([out_dir], os.path.join(out_dir, "report.html"), meta)
    return results, report


def write_results(
    out_dir: str, results: list[dict[str, Any]], started: float, jobs: int, command: str
) -> dict[str, Any]:
    output.write_lines(os.path.join(out_dir, "results.jsonl"), results)
    meta = {
        "schema": SCHEMA,
        "started": started,
        "seconds": round(time.time() - started, 2),
        "jobs": jobs,
        "cells": len(results),
        "verdicts": summary(results),
        "command": command,
        "kernel": os.uname().release,
    }
    output.write_json(os.path.join(out_dir, "matrix.json"), meta)
    return meta
