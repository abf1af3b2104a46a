"""The matrix: the default grid of scenarios, its expansion by filters, and running its cells in
parallel, each in its own namespaces and its own process so that one stuck or crashed cell
never takes the others with it."""

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

from mbtest.scenario.spec import Scenario

SCHEMA = "mbtest.matrix/1"
SP, DP, DHS, LB = "single-path", "dual-path", "dual-homed-server", "load-balanced"
HTTP = "GET /mptcp/index.html HTTP/1.1\r\nHost: example\r\n\r\n"
FTP = "PORT 10,1,1,1,200,10\r\n"


def _cell(
    name: str, topology: str, slot: str | None, spec: str | None, expect: str, **kw
) -> Scenario:
    return Scenario(
        name=name, topology=topology, middleboxes={slot: spec} if spec else {}, expect=expect, **kw
    )


def default_grid() -> list[Scenario]:
    """Every catalog behaviour on the initial path, join-path variants where they matter,
    checksums on and off where they matter, both directions for payload changes."""
    cells = [
        _cell("baseline", SP, None, None, "mptcp-unaffected"),
        _cell("baseline-dual-path", DP, None, None, "mptcp-with-joins"),
        _cell("pass", SP, "slot", "pass", "mptcp-unaffected"),
        _cell("ips-alert", SP, "slot", "ips-alert", "mptcp-unaffected"),
        _cell("strip-mpc-syn-nop", SP, "slot", "strip-option:segments=syn,mode=nop", "fallback-at-handshake"),
        _cell("strip-mpc-syn-remove", SP, "slot", "strip-option:segments=syn,mode=remove", "fallback-at-handshake"),
        _cell("strip-mpc-synack", SP, "slot", "strip-option:segments=synack", "fallback-at-handshake"),
        _cell("strip-mpc-third-ack", SP, "slot", "strip-option:direction=c2s,after=1", "fallback-at-handshake"),
        _cell("strip-dss-data", SP, "slot", "strip-option:subtypes=DSS,segments=data", "fallback-infinite-mapping"),
        _cell("eol-after-syn", SP, "slot", "strip-option:subtypes=ALL,segments=data,mode=eol",
              "fallback-infinite-mapping"),
        _cell("strip-dss-join-path", DP, "slotb", "strip-option:subtypes=DSS,segments=data", "join-reset-middlebox"),
        _cell("drop-mpc-syn", SP, "slot", "drop-option:segments=syn", "fallback-at-handshake"),
        _cell("drop-join-syn", DP, "slotb", "drop-option:subtypes=MP_JOIN,segments=syn", "join-not-established"),
        _cell("strip-join-syn", DP, "slotb", "strip-option:subtypes=MP_JOIN,segments=syn", "join-not-established"),
        _cell("strip-join-synack", DP, "slotb", "strip-option:subtypes=MP_JOIN,segments=synack",
              "join-synack-stripped"),
        _cell("rst-join", DP, "slotb", "rst-join", "join-not-established"),
        _cell("mangle-mpc-clear-a", SP, "slot",
              "mangle-option:field=MP_CAPABLE.checksum_required,value=0,segments=synack",
              "flags-consistent", checksums=True),
        # RFC 8684 §3.1: an MP_CAPABLE with B set that is not understood is ignored: fallback.
        _cell("mangle-mpc-set-b", SP, "slot", "mangle-option:field=MP_CAPABLE.extensibility,value=1,segments=syn",
              "fallback-at-handshake"),
        _cell("nat", SP, "slot", "nat", "mptcp-unaffected"),
        _cell("nat-join-path", DP, "slotb", "nat:ports=range", "mptcp-with-joins"),
        _cell("seq-rewrite", SP, "slot", "seq-rewrite", "mptcp-unaffected"),
        _cell("mss-clamp", SP, "slot", "mss-clamp:value=1000", "mptcp-unaffected"),
        _cell("window-shrink", SP, "slot", "window-shrink:divisor=4", "mptcp-unaffected"),
        _cell("ipid-rewrite", SP, "slot", "ipid-rewrite", "mptcp-unaffected"),
        _cell("split", SP, "slot", "split", "mptcp-unaffected"),
        _cell("coalesce", "single-path-jumbo", "slot", "coalesce:max_size=8000", "mptcp-unaffected"),
        _cell("kernel-optstrip-syn", SP, "slot", "kernel-optstrip:segments=syn", "fallback-at-handshake"),
        _cell("syn-proxy", SP, "slot", "syn-proxy", "plain-tcp"),
        _cell("transparent-proxy", SP, "slot", "transparent-proxy", "plain-tcp"),
        _cell("add-addr-stripped", DHS, "slot", "strip-option:subtypes=ADD_ADDR", "add-addr-removed"),
        _cell("add-addr-rewritten", DHS, "slot", "mangle-option:field=ADD_ADDR.address,value=10.3.6.99",
              "add-addr-ignored"),
        _cell("add-addr-echo-dropped", DHS, "slot", "drop-option:subtypes=ADD_ADDR_ECHO", "add-addr-retransmitted"),
        _cell("lb-split", LB, "lb", "lb-split", "lb-unknown-token"),
    ]  # fmt: skip
    for checksums in (True, False):
        tag = "csum" if checksums else "nocsum"
        for direction in ("c2s", "s2c"):
            flip = f"payload-flip:segment=20,direction={direction}"
            expect = "payload-csum-single" if checksums else "payload-undetected"
            cells.append(
                _cell(
                    f"payload-flip-{direction}-{tag}", SP, "slot", flip, expect, checksums=checksums
                )
            )
        cells.append(_cell(f"payload-flip-two-subflows-{tag}", DP, "slota", "payload-flip:segment=20",
                           "payload-csum-multi" if checksums else "payload-undetected", checksums=checksums))  # fmt: skip
        rewrite = "payload-rewrite:find=mptcp,replace=MPTCP-ALG"
        length = "length-change-csum" if checksums else "length-change-nocsum"
        cells.append(
            _cell(
                f"payload-rewrite-{tag}",
                SP,
                "slot",
                rewrite,
                length,
                checksums=checksums,
                text=HTTP,
            )
        )
        # one PORT command per segment, as on a real FTP control connection
        cells.append(_cell(f"ftp-alg-{tag}", SP, "slot", "ftp-alg", length, checksums=checksums, text=FTP, port=21,
                           c2s_bytes=len(FTP) * 100, s2c_bytes=2_000, chunk=len(FTP)))  # fmt: skip
    return cells


def select(grid: list[Scenario], topologies: tuple[str, ...], behaviours: tuple[str, ...],
           checksum: str) -> list[Scenario]:  # fmt: skip
    """The cells matching the filters (behaviour by name, or 'none' for baselines)."""
    out = []
    for cell in grid:
        names = {spec.split(":")[0] for spec in cell.middleboxes.values()} or {"none"}
        if topologies and cell.topology not in topologies:
            continue
        if behaviours and not names & set(behaviours):
            continue
        if checksum != "both" and cell.checksums != (checksum == "on"):
            continue
        out.append(cell)
    return out


def run_cells(
    cells: list[Scenario],
    out_dir: str,
    jobs: int,
    on_done: Callable[[dict[str, Any]], None] = lambda r: None,
) -> list[dict[str, Any]]:
    """Run each cell in a child process (at most ``jobs`` at once); results in grid order.

    On Ctrl-C or SIGTERM the running children are told to stop (they tear their testbeds
    down) and the results finished so far are kept."""
    os.makedirs(out_dir, exist_ok=True)
    pending = list(enumerate(cells))
    running: dict[int, tuple[subprocess.Popen, str, float]] = {}
    results: dict[int, dict[str, Any]] = {}
    try:
        while pending or running:
            while pending and len(running) < jobs:
                index, cell = pending.pop(0)
                cell_dir = os.path.join(out_dir, f"{index:03d}-{cell.name}")
                os.makedirs(cell_dir, exist_ok=True)
                with open(os.path.join(cell_dir, "scenario.json"), "w") as f:
                    json.dump(cell.to_json(), f)
                argv = [sys.executable, "-m", "mbtest.cli", "run", os.path.join(cell_dir, "scenario.json"),
                        "-o", cell_dir, "--quiet"]  # fmt: skip
                proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
                running[index] = (proc, cell_dir, time.monotonic())
            time.sleep(0.05)
            for index, (proc, cell_dir, started) in list(running.items()):
                limit = cells[index].deadline + 60
                if proc.poll() is None and time.monotonic() - started > limit:
                    proc.send_signal(signal.SIGTERM)  # a cell past its deadline is ended
                    with contextlib.suppress(subprocess.TimeoutExpired):
                        proc.wait(30)
                if proc.poll() is None:
                    continue
                del running[index]
                results[index] = _collect(cells[index], proc, cell_dir)
                on_done(results[index])
    finally:  # stopped early (Ctrl-C, SIGTERM): stop the running cells, keep what finished
        for proc, _, _ in running.values():
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGTERM)
        for index, (proc, cell_dir, _) in running.items():
            with contextlib.suppress(subprocess.TimeoutExpired):
                proc.wait(30)
            if os.path.exists(os.path.join(cell_dir, "cell.json")):
                results[index] = _collect(cells[index], proc, cell_dir)
                on_done(results[index])
    return [results[i] for i in sorted(results)]


def _collect(cell: Scenario, proc: subprocess.Popen, cell_dir: str) -> dict[str, Any]:
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
        result = {"schema": "mbtest.cell/1", "scenario": cell.to_json(), "verdict": "error", "why": [why],
                  "facts": {}}  # fmt: skip
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
