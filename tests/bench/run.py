"""Benchmarks: figures measured in one run, written as a JSON dict of named numbers.

Absolute times on a shared machine are noise; the ratios measured in the same run
(ours versus tshark on the same file) are the figures to read.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import struct
import subprocess
import tempfile
import time
from pathlib import Path

from mbtest.observe.decode import decode_capture
from mbtest.packet.pcap import read_frames
from tests.tshark import FIELDS

DATA = Path(__file__).parent.parent / "data"


def synthetic_capture(path: str, packets: int) -> None:
    """A pcap of `packets` frames, cycling through the kernel's recorded MPTCP exchange."""
    frames = list(read_frames(DATA / "exchange-v4-csum.client.pcap"))
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 262144, frames[0].linktype))
        for i in range(packets):
            frame = frames[i % len(frames)]
            f.write(
                struct.pack(
                    "<IIII",
                    1_800_000_000 + i // 1000,
                    (i % 1000) * 1000,
                    len(frame.data),
                    len(frame.data),
                )
            )
            f.write(frame.data)


def best_of(n: int, fn) -> float:
    times = []
    for _ in range(n):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_decode(packets: int = 100_000) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "bench.pcap")
        synthetic_capture(path, packets)
        ours = best_of(3, lambda: sum(1 for _ in decode_capture(path, only_mptcp=False)))
        figures = {"decode_packets": packets, "decode_packets_per_second": round(packets / ours)}
        if shutil.which("tshark"):
            argv = [
                "tshark",
                "-n",
                "-r",
                path,
                "-T",
                "fields",
                "-E",
                "occurrence=a",
                "-e",
                "frame.number",
            ]
            for field in FIELDS:
                argv += ["-e", field]
            theirs = best_of(  # (best of three on each side: this machine's steal is noisy)
                3, lambda: subprocess.run(argv, capture_output=True, check=True, timeout=600)
            )
            figures["tshark_fields_packets_per_second"] = round(packets / theirs)
            figures["decode_speedup_vs_tshark_fields"] = round(theirs / ours, 2)
        for mode, extra in (("table", []), ("json", ["--json"])):
            costs = [command_cost(["mbtest", "decode", path, "--all", *extra]) for _ in range(3)]
            seconds, kbytes = min(c[0] for c in costs), max(c[1] for c in costs)
            figures[f"decode_{mode}_command_seconds"] = round(seconds, 2)
            figures[f"decode_{mode}_command_peak_mbytes"] = round(kbytes / 1024, 1)
            if shutil.which("tshark"):
                figures[f"decode_{mode}_speedup_vs_tshark_fields"] = round(theirs / seconds, 2)
        return figures


def command_cost(argv: list[str]) -> tuple[float, int]:
    """Wall seconds and peak resident kilobytes of a command, its output thrown away."""
    import sys

    if argv[0] == "mbtest":
        argv = [sys.executable, "-m", "mbtest.cli", *argv[1:]]
    start = time.perf_counter()
    with open(os.devnull, "wb") as sink:
        proc = subprocess.Popen(argv, stdout=sink)
        _, status, usage = os.wait4(proc.pid, 0)
    proc.returncode = os.waitstatus_to_exitcode(status)
    if proc.returncode:
        raise RuntimeError(f"{argv} exited {proc.returncode}")
    return time.perf_counter() - start, usage.ru_maxrss


def goodput(spec: str | None, size: int = 50_000_000) -> float:
    """Mbit/s of one 50 MB MPTCP transfer across single-path, with spec in the slot."""
    from mbtest.experiment.run import RunConfig, run_traffic
    from mbtest.testbed import builder, topology

    config = RunConfig(c2s_bytes=size, s2c_bytes=0, capture=False, deadline=300, stall_timeout=20)
    middleboxes = {"slot": spec} if spec else {}
    with tempfile.TemporaryDirectory() as tmp:
        bed = builder.Testbed(topology.load("single-path"), middleboxes=middleboxes, log_dir=tmp)
        with bed:
            doc = run_traffic(bed, config, tmp)
    stream = doc["transfer"]["streams"][0]
    assert stream["received"] == size, f"the 50 MB transfer through {spec} did not arrive"
    crashed = [m["crashed"] for m in doc["middleboxes"].values() if m["crashed"]]
    assert not crashed, crashed
    return size * 8 / 1e6 / doc["transfer"]["seconds"]


def bench_testbeds(repeats: int = 5) -> dict[str, float]:
    """Median build+teardown of single-path and dual-path, and goodput across single-path."""
    import statistics

    from mbtest.testbed import builder, topology

    figures: dict[str, float] = {}
    for name in ("single-path", "dual-path"):
        topo = topology.load(name)
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            with builder.Testbed(topo):
                pass
            times.append(time.perf_counter() - start)
        figures[f"{name}_build_teardown_median_seconds"] = round(statistics.median(times), 3)
    empty = goodput(None)
    figures["single_path_goodput_50MB_Mbit_per_second"] = round(empty)
    behaviours = {
        "pass": "pass",  # every packet through userspace (the native fast path), unchanged
        "option_only_strip_mp_join": "strip-option:subtypes=MP_JOIN",  # queues handshakes only
        "option_only_ips_alert": "ips-alert",  # queues SYNs only
        "payload_flip_every_segment": "payload-flip:every=1",
    }
    for name, spec in behaviours.items():
        figures[f"goodput_ratio_{name}_vs_empty_slot"] = round(goodput(spec) / empty, 3)
    os.environ["MBTEST_NATIVE"] = "0"  # the Python engine on the every-packet behaviours
    try:
        for name in ("pass", "payload_flip_every_segment"):
            ratio = goodput(behaviours[name]) / empty
            figures[f"goodput_ratio_{name}_python_engine_vs_empty_slot"] = round(ratio, 3)
    finally:
        del os.environ["MBTEST_NATIVE"]
    return figures


def bench_probe(repeats: int = 3) -> dict[str, float]:
    """``mbtest probe`` end to end (the command's wall time, start-up included) across
    long-path (10 hops, hop 2 silent), from the testbed's client: one probe, the default six
    side by side, the default six one TTL at a time (traceroute's and tracebox's method), and
    the default six toward a port the target never answers. Medians of REPEATS runs."""
    import socket
    import statistics
    import sys

    from mbtest.host import netns
    from mbtest.testbed import builder, topology

    topo = topology.load("long-path", {"silent_at": 2})
    target = topo.addresses("server", 4)[0]
    cases = {
        "one_probe": ["--probe", "mp_capable"],
        "six_probes": [],
        "six_probes_one_ttl_at_a_time": ["--serial"],
        "six_probes_silent_target": ["--port", "81"],
    }
    walls: dict[str, list[float]] = {name: [] for name in cases}
    with builder.Testbed(topo) as bed:

        def listen():
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM, 262)
            sock.bind(("0.0.0.0", 80))
            sock.listen(64)
            return sock

        listener = netns.call_in(bed.server_ns, listen)
        drop = ["iptables", "-A", "INPUT", "-p", "tcp", "--dport", "81", "-j", "DROP"]
        netns.call_in(bed.server_ns, subprocess.run, drop, check=True)
        base = [sys.executable, "-m", "mbtest.cli", "probe", target, "--from", "client"]
        base += ["--testbed", bed.run_id, "-n", "--timeout", "1", "--json", "--no-fail"]
        for _ in range(repeats):
            for name, extra in cases.items():
                start = time.perf_counter()
                done = subprocess.run([*base, *extra], capture_output=True, text=True, timeout=300)
                walls[name].append(time.perf_counter() - start)
                assert done.returncode == 0, done.stderr
                results = [json.loads(line) for line in done.stdout.splitlines()]
                for doc in results:
                    result = doc["probes"][0]
                    if name == "six_probes_silent_target":
                        continue
                    assert result["destination"]["ttl"] == 10, (name, result["destination"])
                    assert [h["ttl"] for h in result["hops"] if h["silent"]] == [2]
        first_packet = first_packet_after_start(base)
        with tempfile.TemporaryDirectory() as venv:  # as a user runs it: from a wheel
            python = wheel_install(venv)
            first_packet_wheel = first_packet_after_start([python, *base[1:]], cwd=venv)
        listener.close()
    figures: dict[str, float] = {"probe_long_path_hops": 10}
    median = {name: statistics.median(times) for name, times in walls.items()}
    for name, seconds in median.items():
        figures[f"probe_{name}_command_seconds"] = round(seconds, 3)
    figures["probe_six_side_by_side_over_one_probe"] = round(
        median["six_probes"] / median["one_probe"], 2
    )
    figures["probe_six_speedup_side_by_side_vs_one_ttl_at_a_time"] = round(
        median["six_probes_one_ttl_at_a_time"] / median["six_probes"], 1
    )
    figures["probe_first_packet_after_start_seconds"] = first_packet_wheel
    figures["probe_first_packet_after_start_editable_checkout_seconds"] = first_packet
    return figures


def bench_campaign(targets: int = 100) -> dict[str, float]:
    """``mbtest probe --targets`` over the emulated Internet (topologies/internet.toml, seed
    1): how much of the packet budget a campaign uses (packets sent / (budget x wall time),
    the campaign's own count) and targets per second, at a budget the workers can fill and
    at one that the 2 cores cannot; every run judged against the ground truth (recall and
    precision must be 1, every hop as the truth says)."""
    import re
    import sys

    from mbtest.middlebox.log import logs_in
    from mbtest.probe.groundtruth import judge
    from mbtest.testbed import builder, topology

    cases = {"v4_300pps_16_workers": ("4", 16, 300), "v6_300pps_16_workers": ("6", 16, 300),
             "v4_1000pps_32_workers": ("4", 32, 1000)}  # fmt: skip
    figures: dict[str, float] = {"campaign_targets": targets}
    with tempfile.TemporaryDirectory() as logs:
        topo = topology.load("internet", {"targets": targets, "seed": 17})
        with builder.Testbed(topo, log_dir=logs) as bed:
            figures["campaign_internet_build_seconds"] = round(bed.build_seconds, 1)
            with open(bed.truth_path) as f:
                truth = json.load(f)
            for name, (version, workers, pps) in cases.items():
                out = os.path.join(logs, f"{name}.jsonl")
                argv = [sys.executable, "-m", "mbtest.cli", "probe", "--targets",
                        os.path.join(logs, f"targets-v{version}.txt"), "--from", "client",
                        "--testbed", bed.run_id, "-w", str(workers), "--pps", str(pps), "-n",
                        "-o", out]  # fmt: skip
                done = subprocess.run(argv, capture_output=True, text=True, timeout=900)
                budget_line = r"(\d+) packets in ([\d.]+) s: ([\d.]+) of the budget"
                said = re.search(budget_line, done.stderr)
                assert said, done.stderr[-2000:]
                packets, seconds, used = int(said[1]), float(said[2]), float(said[3])
                with open(out) as f:
                    results = [json.loads(line) for line in f]
                verdict = judge(truth, results, logs_in(logs))
                right = not (verdict.missed or verdict.false_positives or verdict.unsaid
                             or verdict.hop_errors or verdict.unreadable)  # fmt: skip
                figures[f"campaign_{name}_budget_used"] = used
                figures[f"campaign_{name}_targets_per_second"] = round(len(results) / seconds, 2)
                figures[f"campaign_{name}_packets"] = packets
                figures[f"campaign_{name}_recall"] = round(verdict.recall, 3)
                figures[f"campaign_{name}_precision"] = round(verdict.precision, 3)
                figures[f"campaign_{name}_every_result_right"] = int(right)
    return figures


def bench_kernels(versions: tuple[str, ...] = ("6.1", "6.12", "6.18", "7")) -> dict[str, float]:
    """Guests on other kernels (QEMU microvm under TCG): for each kernel, the wall time of
    ``mbtest kernel run V -- true`` (boot, run the command, power off; median of three),
    and ``topo up single-path --listen`` with the server on 6.1 as a ratio to the host's
    kernel (median of three each). The kernels are fetched into the machine's cache."""
    import statistics
    import sys

    from mbtest.host import kernels

    figures: dict[str, float] = {}
    base = [sys.executable, "-m", "mbtest.cli"]
    for version in versions:
        kernel = kernels.fetch(version)
        walls = []
        for _ in range(3):
            start = time.perf_counter()
            done = subprocess.run([*base, "kernel", "run", kernel.release, "--", "true"],
                                  capture_output=True, text=True, timeout=300)  # fmt: skip
            assert done.returncode == 0, done.stderr
            walls.append(time.perf_counter() - start)
        figures[f"kernel_{version}_release"] = kernel.release  # type: ignore[assignment]
        figures[f"kernel_{version}_boot_run_poweroff_seconds"] = round(statistics.median(walls), 2)

    def up(extra: list[str]) -> float:
        start = time.perf_counter()
        done = subprocess.run([*base, "topo", "up", "single-path", "--listen", "80", "--json",
                               *extra], capture_output=True, text=True, timeout=300)  # fmt: skip
        seconds = time.perf_counter() - start
        assert done.returncode == 0, done.stderr
        subprocess.run([*base, "topo", "down", json.loads(done.stdout)["testbed"]],
                       capture_output=True, timeout=120)  # fmt: skip
        return seconds

    host = statistics.median(up([]) for _ in range(3))
    guest = statistics.median(up(["--kernel", "6.1"]) for _ in range(3))
    figures["topo_up_server_on_6_1_seconds"] = round(guest, 2)
    figures["topo_up_server_on_6_1_over_host"] = round(guest / host, 1)
    return figures


def bench_kernel_matrix(version: str = "6.1", jobs: int = 2) -> dict[str, float]:
    """Cells with their endpoints on another kernel, as ratios to the host's kernel measured
    in this run: one cell with a VM booted for it (cold: ``run --kernel``), cells in a VM
    that served cells before (warm: a matrix's second and later cells), and the default
    matrix with ``-j 2``; which cells' verdicts or facts differ from the host's."""
    import statistics
    import sys

    from mbtest.experiment import grid, matrix
    from mbtest.host import kernels

    kernel = kernels.fetch(version)
    figures: dict[str, float] = {"kernel_matrix_release": kernel.release}  # type: ignore[dict-item]
    base = [sys.executable, "-m", "mbtest.cli", "run", "--cell", "baseline", "--quiet"]

    def one(extra: list[str]) -> float:
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            done = subprocess.run([*base, "-o", tmp, *extra], capture_output=True, text=True,
                                  timeout=600)  # fmt: skip
            assert done.returncode == 0, done.stderr
            return time.perf_counter() - start

    host_cell = statistics.median(one([]) for _ in range(3))
    cold_cell = statistics.median(one(["--kernel", version]) for _ in range(3))
    figures["cell_host_seconds"] = round(host_cell, 2)
    figures["cell_cold_vm_seconds"] = round(cold_cell, 2)
    figures["cell_cold_vm_over_host"] = round(cold_cell / host_cell, 1)
    cells = grid.default_grid()
    results = {}
    for kernel_name in ("host", version):
        chosen = [cell.on_kernel(kernel_name) for cell in cells]
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            results[kernel_name] = matrix.run_cells(chosen, tmp, jobs)
            figures[f"matrix_{kernel_name}_wall_seconds"] = round(time.perf_counter() - start, 1)
    figures["matrix_other_kernel_over_host"] = round(
        figures[f"matrix_{version}_wall_seconds"] / figures["matrix_host_wall_seconds"], 1
    )
    walls = {k: [r["timings"]["wall"] for r in rs if "wall" in r.get("timings", {})]
             for k, rs in results.items()}  # fmt: skip
    warm = walls[version][jobs:]  # (the first cell of each VM waited for its boot)
    figures["cell_warm_vm_median_seconds"] = round(statistics.median(warm), 2)
    figures["cell_host_in_matrix_median_seconds"] = round(statistics.median(walls["host"]), 2)
    figures["cell_warm_vm_over_host"] = round(
        figures["cell_warm_vm_median_seconds"] / figures["cell_host_in_matrix_median_seconds"], 1
    )
    differing = []
    for host, other in zip(results["host"], results[version], strict=True):
        facts = sorted(
            name for name in set(host.get("facts", {})) | set(other.get("facts", {}))
            if (host["facts"].get(name) or {}).get("value")
            != (other["facts"].get(name) or {}).get("value")
        )  # fmt: skip
        if host["verdict"] != other["verdict"] or facts:
            differing.append(
                f"{host['scenario']['name']}: {host['verdict']} / {other['verdict']}"
                + (f" (facts: {', '.join(facts)})" if facts else "")
            )
    figures["matrix_cells_differing_from_host"] = differing  # type: ignore[assignment]
    return figures


def wheel_install(folder: str) -> str:
    """A wheel of this checkout installed in a fresh virtual environment in ``folder``
    (what a user runs: an editable checkout spends about 20 ms more on every command's
    start, importing setuptools' finder); returns its python."""
    import sys

    checkout = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    dist = os.path.join(folder, "dist")
    pip = [sys.executable, "-m", "pip", "wheel", "-q", "--no-deps", "-w", dist, checkout]
    subprocess.run(pip, check=True, capture_output=True, timeout=600)
    subprocess.run([sys.executable, "-m", "venv", os.path.join(folder, "venv")], check=True)
    python = os.path.join(folder, "venv", "bin", "python")
    wheels = [os.path.join(dist, name) for name in os.listdir(dist)]
    install = [python, "-m", "pip", "install", "-q", *wheels]
    subprocess.run(install, check=True, capture_output=True, timeout=600)
    return python


def first_packet_after_start(base: list[str], repeats: int = 5, cwd: str | None = None) -> float:
    """Median seconds from the command's start to its first packet, as the probe records."""
    import statistics

    seen = []
    with tempfile.TemporaryDirectory() as tmp:
        written = os.path.join(tmp, "probe.json")
        for _ in range(repeats):
            argv = [*base, "--probe", "plain_syn", "-o", written]
            subprocess.run(argv, capture_output=True, check=True, timeout=120, cwd=cwd)
            with open(written) as f:
                seen.append(json.load(f)["first_packet_seconds"])
    return round(statistics.median(seen), 3)


SLOW_PATH = {"MBTEST_CELL_START": "interpreter", "MBTEST_MIDDLEBOX_START": "interpreter"}


def own_time(timings: dict[str, float]) -> float:
    """What a cell spends on its own traffic and the waits its expectation needs: the
    handshake and the subflows (a dropped SYN's retransmissions), the transfer (its stall
    timeouts included) and the hold."""
    ready = timings.get("captures_ready", 0.0)
    handshake = timings.get("subflows", timings.get("connect", ready)) - ready
    return handshake + timings.get("transfer", 0.0) + timings.get("hold", 0.0)


def bench_matrix(jobs: int = 2) -> dict[str, float]:
    """The default matrix with -j 2 on the fast path (cells forked from a warm server,
    middleboxes forked from their cell, namespaces and links made without a process per
    netlink socket) and on the slow path (a fresh interpreter for each), in the same run:
    the wall times, the median per-cell overhead (a cell's wall time, start to exit as the
    matrix sees it, less ``own_time``), the median of each phase, and how many cells both
    paths gave the same verdict."""
    import statistics

    from mbtest.experiment import grid, matrix

    cells = grid.default_grid()
    figures: dict[str, float] = {"matrix_cells": len(cells), "matrix_jobs": jobs}
    verdicts: dict[str, list[str]] = {}
    for path, env in (("fast", {}), ("slow", SLOW_PATH)):
        saved = {k: os.environ.get(k) for k in SLOW_PATH}
        os.environ.update(env)
        try:
            with tempfile.TemporaryDirectory() as tmp:
                start = time.perf_counter()
                results = matrix.run_cells(cells, tmp, jobs)
                figures[f"matrix_{path}_wall_seconds"] = round(time.perf_counter() - start, 1)
        finally:
            for k, v in saved.items():
                os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)
        verdicts[path] = [r["verdict"] for r in results]
        timings = [r.get("timings", {}) for r in results]
        overheads = [t["wall"] - own_time(t) for t in timings if "wall" in t]
        figures[f"matrix_{path}_median_cell_overhead_seconds"] = round(
            statistics.median(overheads), 3
        )
        for phase in ("wall", "build", "captures_ready", "teardown", "judge"):
            values = [t[phase] for t in timings if phase in t]
            if values:
                figures[f"matrix_{path}_median_{phase}_seconds"] = round(
                    statistics.median(values), 3
                )
        started = [
            t["wall"] - (r.get("seconds") or 0)
            for r, t in zip(results, timings, strict=True)
            if "wall" in t
        ]
        figures[f"matrix_{path}_median_process_start_and_exit_seconds"] = round(
            statistics.median(started), 3
        )
    figures["matrix_speedup_fast_vs_slow"] = round(
        figures["matrix_slow_wall_seconds"] / figures["matrix_fast_wall_seconds"], 2
    )
    same = sum(a == b for a, b in zip(verdicts["fast"], verdicts["slow"], strict=True))
    figures["matrix_cells_same_verdict_fast_and_slow"] = same
    figures["matrix_cells_differing_fast_and_slow"] = [  # (which, and how: to be explained)
        f"{cell.name}: {a} / {b}"
        for cell, a, b in zip(cells, verdicts["fast"], verdicts["slow"], strict=True)
        if a != b
    ]
    return figures


def bench_stability(matrices: int = 5, record: str | None = None) -> dict[str, float]:
    """The default matrix run ``matrices`` times in a row (-j 2, as `make demo` runs it):
    how many cells gave the same verdict every time, and which did not. With ``record``,
    each cell's verdicts go there, and each matrix's results beside it."""
    from mbtest.experiment import grid, matrix

    cells = grid.default_grid()
    runs: list[dict[str, str]] = []
    walls = []
    for i in range(matrices):
        with tempfile.TemporaryDirectory() as tmp:
            start = time.perf_counter()
            results = matrix.run_cells(cells, tmp, 2)
            walls.append(time.perf_counter() - start)
        if record:
            lines = "".join(json.dumps(r) + "\n" for r in results)
            Path(record).with_suffix(f".{i + 1}.jsonl").write_text(lines)
        runs.append({r["scenario"]["name"]: r["verdict"] for r in results})
    names = [c.name for c in cells]
    differing = [n for n in names if len({run.get(n) for run in runs}) > 1]
    if record:
        detail = {n: [run.get(n) for run in runs] for n in names}
        Path(record).write_text(json.dumps(detail, indent=1) + "\n")
    return {
        "stability_matrices": matrices,
        "stability_cells": len(names),
        "stability_cells_identical": len(names) - len(differing),
        "stability_cells_differing": differing,
        "stability_matrix_wall_seconds_median": round(sorted(walls)[len(walls) // 2], 1),
    }


def bench_rewrite(segments: int = 20_000, window: int = 1_000) -> dict[str, float]:
    """payload-rewrite's cost per segment at the start of a flow and after SEGMENTS
    rewrites: the ratio is 1 when the cost does not grow with the flow's history."""
    from mbtest.middlebox.flows import FlowTracker
    from mbtest.middlebox.spec import MiddleboxSpec
    from mbtest.packet.edit import TcpPacket
    from tests.unit.test_middlebox_behaviours import C, S, handshake, pkt

    template = TcpPacket(pkt(C, S, "A", [], payload=b"GET /mptcp HTTP/1.1\r\n" * 20))
    length = len(bytes(template.payload))
    data = []
    for i in range(segments):
        template.seq = (1001 + i * length) & 0xFFFFFFFF
        data.append(template.to_bytes())
    behaviour = MiddleboxSpec.parse("payload-rewrite:find=mptcp,replace=MultipathTCP").build()
    tracker = FlowTracker()
    for raw in handshake():
        p = TcpPacket(raw)
        behaviour.handle(p, tracker.observe(p))
    times = []
    for raw in data:
        start = time.perf_counter()
        p = TcpPacket(raw)
        behaviour.handle(p, tracker.observe(p))
        times.append(time.perf_counter() - start)
    early = sorted(times[:window])[window // 2]
    late = sorted(times[-window:])[window // 2]
    return {
        "rewrite_segments": segments,
        "rewrite_early_us_per_segment": round(early * 1e6, 1),
        "rewrite_late_us_per_segment": round(late * 1e6, 1),
        "rewrite_late_over_early": round(late / early, 2),
    }


def bench_report(cells: int = 500) -> dict[str, float]:
    """Time to render a report of 500 cells (recorded cells repeated)."""
    import json as _json
    from pathlib import Path

    from mbtest.report.render import render
    from tests.unit.test_report import results_dir

    with tempfile.TemporaryDirectory() as tmp:
        base = results_dir(Path(tmp))
        lines = (base / "results.jsonl").read_text().splitlines()
        many = []
        for i in range(cells):
            cell = _json.loads(lines[i % len(lines)])
            cell["scenario"]["name"] += f"-{i}"
            many.append(_json.dumps(cell))
        (base / "results.jsonl").write_text("\n".join(many) + "\n")
        seconds = best_of(3, lambda: render([str(base)], str(base / "report.html")))
        size = os.path.getsize(base / "report.html")
    return {
        "report_500_cells_render_seconds": round(seconds, 2),
        "report_500_cells_mbytes": round(size / 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--output", default="reports/bench.json")
    parser.add_argument(
        "--only",
        choices=(
            "stability",
            "rewrite",
            "decode",
            "probe",
            "campaign",
            "kernels",
            "kernel-matrix",
            "matrix",
        ),
        help="only this benchmark (stability: five default matrices)",
    )
    args = parser.parse_args()
    os.makedirs(os.path.dirname(args.output) or ".", exist_ok=True)
    record = os.path.join(os.path.dirname(args.output) or ".", "stability-verdicts.json")
    benches = {
        "decode": bench_decode,
        "rewrite": bench_rewrite,
        "report": bench_report,
        "probe": bench_probe,  # (this one and those after it need root)
        "campaign": bench_campaign,
        "kernels": bench_kernels,
        "kernel-matrix": bench_kernel_matrix,
        "testbeds": bench_testbeds,
        "matrix": bench_matrix,
        "stability": lambda: bench_stability(record=record),
    }
    chosen = [args.only] if args.only else list(benches)
    if os.geteuid() != 0:
        chosen = [name for name in chosen if name in ("decode", "rewrite", "report")]
    figures: dict[str, float] = {}
    for name in chosen:
        figures.update(benches[name]())
    with open(args.output, "w") as f:
        json.dump(figures, f, indent=2)
    print(json.dumps(figures, indent=2))


if __name__ == "__main__":
    main()
