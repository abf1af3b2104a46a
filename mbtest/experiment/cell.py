"""Run one scenario: build its testbed, place its middleboxes, run traffic, derive the facts,
compare with the RFC's expectation, and write the cell's result beside its evidence."""

from __future__ import annotations

import os
import sys
import time
from typing import Any

from mbtest.errors import FINDINGS as FINDINGS_EXIT
from mbtest.errors import HARNESS, OK, Interrupted, MbtestError, Stopped, Terminated
from mbtest.experiment import repeats
from mbtest.experiment import scenario as scenarios
from mbtest.experiment.output import write_json
from mbtest.experiment.run import RunConfig, run_traffic
from mbtest.experiment.scenario import Scenario
from mbtest.host import signals
from mbtest.jsondoc import schema
from mbtest.testbed import endpointvm, topology
from mbtest.testbed.builder import Testbed, endpoint_kernel
from mbtest.verdict import expect, facts, references
from mbtest.verdict.decide import FINDINGS, decide
from mbtest.verdict.evidence import Evidence

SCHEMA = schema("cell")


def judge(scenario: Scenario, doc: dict[str, Any], folder: str) -> dict[str, Any]:
    """Facts, verdict, the outcome taken and the references, from a run's evidence."""
    expectation = expect.EXPECTATIONS[scenario.expect]
    observed = facts.observe(Evidence.of(folder, doc))
    decided = decide(expectation, observed, bool(scenario.middleboxes))
    return {
        "facts": {name: f.to_json() for name, f in observed.items()},
        "verdict": decided["verdict"],
        "why": decided["why"],
        "outcome": decided["outcome"],
        "references": references.compare(scenario, observed),
    }


def run_scenario(scenario: Scenario, out_dir: str) -> dict[str, Any]:
    """The cell result (also written to out_dir/cell.json)."""
    os.makedirs(out_dir, exist_ok=True)
    started = time.time()
    expectation = expect.EXPECTATIONS[scenario.expect]
    result: dict[str, Any] = {
        "schema": SCHEMA,
        "scenario": scenario.to_json(),
        "expected": expectation.to_json(),
        "started": started,
    }
    try:
        topo = topology.load(scenario.topology, scenario.params)
        config = RunConfig(
            ip_version=scenario.ip_version,
            checksums=scenario.checksums,
            c2s_bytes=scenario.c2s_bytes,
            s2c_bytes=scenario.s2c_bytes,
            text=scenario.text,
            port=scenario.port,
            chunk=scenario.chunk,
            connect_timeout=scenario.connect_timeout,
            stall_timeout=scenario.stall_timeout,
            deadline=scenario.deadline,
            evidence=scenario.evidence,
            hold=scenario.hold,
            hold_until=scenario.hold_until,
            announce=scenario.announce,
        )
        sysctls = {
            node: {k: str(v) for k, v in values.items()}
            for node, values in scenario.sysctls.items()
        }
        lease = endpointvm.read_lease(out_dir)  # a warm VM a matrix lends this cell
        bed = Testbed(
            topo,
            ip_version=scenario.ip_version,
            checksums=scenario.checksums,
            middleboxes=scenario.middleboxes,
            log_dir=out_dir,
            sysctls=sysctls,
            wire_segments=not scenario.offloads,
            kernel=endpoint_kernel(topo, scenario.kernel),
            vm=endpointvm.EndpointVM.from_lease(lease) if lease else None,
        )
        with bed:
            doc = run_traffic(bed, config, out_dir)
            torn_down = time.monotonic()
        timings = dict(doc.get("timings", {}), teardown=round(time.monotonic() - torn_down, 4))
        judged = time.monotonic()
        result.update(judge(scenario, doc, out_dir))
        timings["judge"] = round(time.monotonic() - judged, 4)
        result.update(
            environment=doc.get("environment", {}),
            kernel=doc.get("kernel", ""),
            run="run.json",
            captures=sorted(doc.get("captures", {})),
            timings=timings,
        )
    except (Interrupted, Terminated) as e:  # stopped, not failed: said so, then stop
        result.update(verdict="not-run", why=[f"{e} while the cell ran"], facts={})
        _write(out_dir, result, started)
        raise
    except MbtestError as e:
        result.update(verdict="error", why=[str(e)], facts={})
    _write(out_dir, result, started)
    return result


def _write(out_dir: str, result: dict[str, Any], started: float) -> None:
    with signals.deferred():
        result["seconds"] = round(time.time() - started, 3)
        write_json(os.path.join(out_dir, "cell.json"), result)


def run_repeated(scenario: Scenario, out_dir: str, repeat: int = 1) -> dict[str, Any]:
    """The scenario run ``repeat`` times (each in out_dir/run-N): stable or flaky."""
    if repeat == 1:
        return repeats.aggregate([run_scenario(scenario, out_dir)], os.path.basename(out_dir))
    runs = []
    for n in range(1, repeat + 1):
        result = run_scenario(scenario, os.path.join(out_dir, f"run-{n}"))
        result["dir"] = f"run-{n}"
        runs.append(result)
    result = repeats.aggregate(runs, ".")
    write_json(os.path.join(out_dir, "cell.json"), result)
    return result


def exit_status(result: dict[str, Any]) -> int:
    """0 nothing to report, 1 a finding, 3 the harness failed (see mbtest.errors)."""
    verdict = result["verdict"]
    if verdict in ("as-expected", "permitted-variant"):
        return OK
    return FINDINGS_EXIT if verdict in FINDINGS else HARNESS


def main(argv: list[str] | None = None) -> int:
    """A matrix cell in its own process: ``python -m mbtest.experiment.cell SCENARIO OUT_DIR``.
    The result is cell.json in OUT_DIR; the exit status says only whether it was written."""
    signals.install()
    args = sys.argv[1:] if argv is None else argv
    if len(args) != 2:
        print("usage: python -m mbtest.experiment.cell SCENARIO.json OUT_DIR", file=sys.stderr)
        return 2
    try:
        run_scenario(scenarios.load(args[0]), args[1])
    except Stopped as e:  # cell.json says not-run; the matrix reports the rest
        return e.exit_code
    except MbtestError as e:
        print(f"mbtest: {e}", file=sys.stderr)
        return e.exit_code
    return 0


if __name__ == "__main__":
    sys.exit(main())
