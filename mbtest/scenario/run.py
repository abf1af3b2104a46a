"""Run one scenario: build its testbed, place its middleboxes, run traffic, derive the facts,
compare with the RFC's expectation, and write the cell's result beside its evidence."""

from __future__ import annotations

import json
import os
import time
from typing import Any

from mbtest.errors import MbtestError
from mbtest.scenario import expect, facts
from mbtest.scenario.spec import Scenario
from mbtest.testbed import topology
from mbtest.testbed.builder import Testbed
from mbtest.testbed.run import RunConfig, run_traffic

SCHEMA = "mbtest.cell/1"


def _log(out_dir: str, doc: dict[str, Any]) -> list[dict[str, Any]]:
    entries = []
    for mb in doc.get("middleboxes", {}).values():
        path = os.path.join(out_dir, mb["log"]) if not os.path.isabs(mb["log"]) else mb["log"]
        if os.path.exists(path):
            with open(path) as f:
                entries += [json.loads(line) for line in f if line.strip()]
    return entries


def run_scenario(scenario: Scenario, out_dir: str) -> dict[str, Any]:
    """The cell result (also written to out_dir/cell.json)."""
    os.makedirs(out_dir, exist_ok=True)
    started = time.time()
    expectation = expect.EXPECTATIONS[scenario.expect]
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "scenario": scenario.to_json(),
        "expected": {"name": expectation.name, "rfc": expectation.rfc, "text": expectation.text},
        "started": started,
    }
    try:
        topo = topology.load(scenario.topology, scenario.params)
        config = RunConfig(
            ip_version=scenario.ip_version, checksums=scenario.checksums,
            c2s_bytes=scenario.c2s_bytes, s2c_bytes=scenario.s2c_bytes, text=scenario.text,
            port=scenario.port, chunk=scenario.chunk, connect_timeout=scenario.connect_timeout,
            stall_timeout=scenario.stall_timeout, deadline=scenario.deadline,
        )  # fmt: skip
        bed = Testbed(topo, ip_version=scenario.ip_version, checksums=scenario.checksums,
                      middleboxes=scenario.middleboxes, log_dir=out_dir)  # fmt: skip
        with bed:
            doc = run_traffic(bed, config, out_dir)
        observed = facts.observe(doc, _log(out_dir, doc))
        decided = expect.verdict(expectation, observed, bool(scenario.middleboxes))
        result.update(
            facts={name: f.to_json() for name, f in observed.items()},
            verdict=decided["verdict"], why=decided["why"], run="run.json",
            captures=sorted(doc.get("captures", {})), timings=doc.get("timings", {}),
        )  # fmt: skip
    except MbtestError as e:
        result.update(verdict="error", why=[str(e)], facts={})
    result["seconds"] = round(time.time() - started, 3)
    with open(os.path.join(out_dir, "cell.json"), "w") as f:
        json.dump(result, f, indent=2)
    return result
