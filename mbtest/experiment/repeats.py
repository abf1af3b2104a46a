"""A cell run several times: one verdict if every run agrees (stable), ``flaky`` with the
counts when they do not, and each run's verdict, reason and evidence kept."""

from __future__ import annotations

from collections import Counter
from typing import Any


def aggregate(runs: list[dict[str, Any]], cell_dir: str) -> dict[str, Any]:
    """The cell's result from its runs (one run: that run's result, marked stable)."""
    if len(runs) == 1:
        result = dict(runs[0])
        result["stability"] = {"runs": 1, "stable": True, "verdicts": {result["verdict"]: 1}}
        return result
    counts = Counter(r["verdict"] for r in runs)
    first = runs[0]
    result = {k: v for k, v in first.items() if k not in ("dir", "seconds")}
    result["dir"] = cell_dir
    result["runs"] = [
        {
            "dir": f"{cell_dir}/{r['dir']}" if r.get("dir") else None,
            "verdict": r["verdict"],
            "why": r.get("why", []),
            "outcome": r.get("outcome"),
            "seconds": r.get("seconds"),
            "facts": {k: f["value"] for k, f in r.get("facts", {}).items()},
        }
        for r in runs
    ]
    stable = len(counts) == 1
    result["stability"] = {"runs": len(runs), "stable": stable, "verdicts": dict(counts)}
    result["seconds"] = round(sum(r.get("seconds") or 0 for r in runs), 3)
    if not stable:
        said = ", ".join(f"{v} of {len(runs)} {k}" for k, v in counts.most_common())
        result["verdict"] = "flaky"
        result["why"] = [f"the runs disagree: {said}"] + [
            f"run {n}: {r['verdict']}" + (f": {r['why'][0]}" if r.get("why") else "")
            for n, r in enumerate(runs, 1)
        ]
        result["outcome"] = None
    return result
