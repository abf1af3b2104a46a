"""The agent inside an endpoint VM (mbtest.testbed.endpointvm): it takes the host's jobs from
the exchange folder one at a time and runs each with the project's own code, as the host
would run it on its own kernel.

A serve job (topo up): the endpoint nodes built and kept, the server listening. A cell job:
the endpoint nodes built in fresh namespaces (``Testbed.build_guest_endpoints``
over the NICs the host lent), the endpoints' part of the run (``run.endpoint_part``: traffic,
counters, MPTCP_INFO, stall evidence, captures into the job's folder), the namespaces
removed (the NICs come back to the guest for the next cell). A job that fails says why in
its result; the agent goes on with the next."""

from __future__ import annotations

import contextlib
import os
import pickle
import sys
import time
import traceback
from pathlib import Path
from typing import Any

from mbtest.endpoints import listener
from mbtest.errors import MbtestError
from mbtest.experiment.run import endpoint_part
from mbtest.host import links
from mbtest.testbed.builder import Testbed
from mbtest.testbed.endpointvm import READY

POLL = 0.02  # seconds between looks for a job (a cell takes seconds)


KEPT: list = []  # what a serve job built: it stays up with the VM


def _testbed(job: dict[str, Any]) -> Testbed:
    return Testbed(
        job["topology"],
        run_id=job["run_id"],
        ip_version=job["ip_version"],
        checksums=job["checksums"],
        sysctls=job["sysctls"],
        wire_segments=job["wire_segments"],
    )


def serve(job: dict[str, Any]) -> dict[str, Any]:
    """(topo up) The endpoints built and kept; the server listening on the job's port."""
    bed = _testbed(job)
    bed.build_guest_endpoints(job["nics"])
    KEPT.append(bed)
    if job.get("port") is not None:
        KEPT.append(listener.start(bed.server_ns, job["port"]))
    return {}


def run_cell(job: dict[str, Any], folder: Path) -> dict[str, Any]:
    bed = _testbed(job)
    try:
        bed.build_guest_endpoints(job["nics"])
        return endpoint_part(bed, job["config"], str(folder))
    finally:
        for number, (node, ifname) in enumerate(job["nics"].values()):
            if node in bed.namespaces:  # (home first: a namespace can outlive its removal)
                with contextlib.suppress(MbtestError):
                    links.release(bed.ns(node), ifname, f"nic{number}")
        bed.teardown()
        if sys.exc_info()[0] is None:  # (after a failure the host replaces the VM)
            links.await_home(set(job["nics"]))  # (the next cell finds them all)


def take(exchange: Path, job_path: Path) -> None:
    """Run one job; its result (ok and the part, or the error) written atomically."""
    name = job_path.stem
    running = exchange / f"{name}.running"
    os.rename(job_path, running)
    try:
        job = pickle.loads(running.read_bytes())
        folder = exchange / job["folder"]
        folder.mkdir(exist_ok=True)
        if job.get("kind") == "cell":
            result = {"ok": True, "part": run_cell(job, folder)}
        elif job.get("kind") == "serve":
            result = {"ok": True, "part": serve(job)}
        else:
            raise MbtestError(f"unknown job {job.get('kind')!r}")
    except MbtestError as e:
        result = {"ok": False, "error": str(e)}
    except Exception as e:  # (a defect: said with where it happened, the agent goes on)
        where = traceback.extract_tb(e.__traceback__)[-1]
        result = {
            "ok": False,
            "error": f"{type(e).__name__}: {e} ({os.path.basename(where.filename)}:{where.lineno})",
        }
    tmp = exchange / f"{name}.result-tmp"
    tmp.write_bytes(pickle.dumps(result))
    os.rename(tmp, exchange / f"{name}.result")
    running.unlink()


def main(exchange_dir: str) -> None:
    exchange = Path(exchange_dir)
    (exchange / "ready-tmp").write_text(os.uname().release + "\n")
    os.rename(exchange / "ready-tmp", exchange / READY)
    while True:
        for job_path in sorted(exchange.glob("*.job")):
            take(exchange, job_path)
        time.sleep(POLL)
