"""Re-record the cells in tests/data/cells from live runs (root, real kernel), so the tests
without root judge evidence the current harness writes. Captures are left out (the packet
facts are checked live, in tests/netns).

    sudo .venv/bin/python -m tests.record_cells
"""

from __future__ import annotations

import glob
import json
import os
import shutil
import tempfile
from pathlib import Path

from mbtest.experiment import grid
from mbtest.experiment.cell import run_scenario
from mbtest.experiment.scenario import Scenario

CELLS = Path(__file__).parent / "data" / "cells"
GRID = (
    "baseline",
    "lb-split",
    "pass",
    "payload-flip-c2s-csum",
    "strip-dss-join-path",
    "strip-mpc-syn-nop",
    "coalesce-across-mappings",
    "add-addr-stripped",
)
EXTRA = {  # a middlebox that never acts: its verdict must be inconclusive, not a pass
    "strip-mp-prio-never": Scenario(
        name="strip-mp-prio-never", middleboxes={"slot": "strip-option:subtypes=MP_PRIO"}
    ),
}


def main() -> None:
    cells = {c.name: c for c in grid.default_grid((4,))}
    chosen = {name: cells[name] for name in GRID} | EXTRA
    for name, scenario in chosen.items():
        with tempfile.TemporaryDirectory() as tmp:
            result = run_scenario(scenario, tmp)
            target = CELLS / name
            shutil.rmtree(target, ignore_errors=True)
            target.mkdir(parents=True)
            for pattern in ("run.json", "middlebox-*.jsonl", "middlebox-*.stats.json"):
                for path in glob.glob(os.path.join(tmp, pattern)):
                    shutil.copy(path, target)
            (target / "scenario.json").write_text(json.dumps(scenario.to_json()))
            print(f"{name}: {result['verdict']}")


if __name__ == "__main__":
    main()
