"""The machine contract on real runs: every command's output validates against the schema it
names; a matrix split into shards and merged gives the same cells and verdicts as one run,
one report and JUnit a JUnit library reads; a stopped matrix resumes; exit statuses."""

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

from junitparser import JUnitXml

from tests.schemas import lines, validate

# fast cells whose verdicts are stable: baselines and harmless behaviours, IPv4
FILTER = ["--middlebox", "none", "--middlebox", "pass", "--middlebox", "seq-rewrite", "--ip", "4"]


def mbtest(*args, timeout=300):
    argv = [sys.executable, "-m", "mbtest.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_run_json_cell_and_run_documents_validate(tmp_path):
    run = mbtest("run", "--cell", "baseline", "--json", "-o", str(tmp_path))
    assert run.returncode == 0, run.stderr
    (cell,) = lines(run.stdout)
    validate(cell, "cell")
    validate(json.loads((tmp_path / "cell.json").read_text()), "cell")
    document = json.loads((tmp_path / "run.json").read_text())
    validate(document, "run")
    nodes = document["environment"]["nodes"]
    assert set(nodes) == {"client", "server"} and nodes["client"]["enabled"] == "1"
    assert run.stderr == ""  # --json: the document on stdout, nothing else said


def test_where_the_results_go_is_said_first(tmp_path):
    run = mbtest("run", "--cell", "baseline", "-o", str(tmp_path / "out"))
    assert run.returncode == 0, run.stderr
    assert run.stdout.splitlines()[0] == f"results: {tmp_path / 'out'}/"
    assert run.stderr == ""  # kept for the one sentence of an error


def test_findings_exit_1_and_no_fail_makes_them_0(tmp_path):
    first = mbtest("run", "--cell", "payload-flip-c2s-csum", "--quiet", "-o", str(tmp_path / "a"))
    assert first.returncode == 1, first.stderr
    again = ["run", "--cell", "payload-flip-c2s-csum", "--quiet", "--no-fail"]
    second = mbtest(*again, "-o", str(tmp_path / "b"))
    assert second.returncode == 0, second.stderr
    cell = json.loads((tmp_path / "a" / "cell.json").read_text())
    assert cell["environment"]["nodes"]["client"]["checksum_enabled"] == "1"


def test_shards_merge_into_the_same_matrix_one_report_and_junit(tmp_path):
    whole = mbtest("matrix", *FILTER, "-o", str(tmp_path / "whole"))
    assert whole.returncode == 0, whole.stderr
    # not a terminal: a plain progress line per cell in the log, as it happens
    assert "[1/" in whole.stderr and "results: " in whole.stderr
    expected = {c["scenario"]["name"]: c["verdict"] for c in _results(tmp_path / "whole")}
    assert len(expected) >= 3
    shards = []
    for i in (1, 2, 3):
        folder = tmp_path / f"shard{i}"
        junit_file = tmp_path / f"shard{i}.xml"
        run = mbtest(
            "matrix", *FILTER, "--shard", f"{i}/3", "-o", str(folder), "--junit", str(junit_file)
        )
        assert run.returncode == 0, run.stderr
        meta = json.loads((folder / "matrix.json").read_text())
        validate(meta, "matrix")
        assert meta["shard"] == f"{i}/3" and meta["complete"] is True
        for cell in _results(folder):
            validate(cell, "cell")
        JUnitXml.fromfile(str(junit_file))  # each shard's JUnit reads on its own
        shards.append(str(folder))
    merged = {}
    for folder in shards:
        for cell in _results(folder):
            assert cell["scenario"]["name"] not in merged  # no cell in two shards
            merged[cell["scenario"]["name"]] = cell["verdict"]
    assert merged == expected
    report = mbtest(
        "report", *shards, "-o", str(tmp_path / "all.html"), "--junit", str(tmp_path / "all.xml")
    )
    assert report.returncode == 0, report.stderr
    html = (tmp_path / "all.html").read_text()
    assert html.count('<details class="cell') == len(expected)
    assert all(f"{i}/3" in html for i in (1, 2, 3))  # each shard's own run, described
    xml = JUnitXml.fromfile(str(tmp_path / "all.xml"))
    cases = {case.name: case for suite in xml for case in suite}
    assert set(cases) == set(expected) and all(not c.result for c in cases.values())


def test_a_stopped_matrix_resumes_where_it_stopped(tmp_path):
    folder = tmp_path / "run"
    argv = [sys.executable, "-m", "mbtest.cli", "matrix", *FILTER, "-j", "1", "-o", str(folder)]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    results = folder / "results.jsonl"
    while time.monotonic() < deadline:
        if results.exists() and len(results.read_text().splitlines()) >= 1:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    assert proc.returncode == 130
    before = _results(folder)
    meta = json.loads((folder / "matrix.json").read_text())
    assert meta["complete"] is False and len(meta["cells"]) > 1
    finished = {c["scenario"]["name"] for c in before if c["verdict"] != "not-run"}
    assert finished and len(finished) < len(meta["cells"])
    run = mbtest("matrix", "--resume", str(folder))
    assert run.returncode == 0, run.stderr
    after = _results(folder)
    names = [c["scenario"]["name"] for c in after]
    assert sorted(names) == sorted(meta["cells"])  # each cell once: none twice, none lost
    assert all(c["verdict"] == "as-expected" for c in after)
    assert json.loads((folder / "matrix.json").read_text())["complete"] is True
    assert f"{len(finished)} kept from before" in run.stderr


def test_probe_json_lines_and_topo_up_json(tmp_path):
    up = mbtest("topo", "up", "single-path", "--json")
    assert up.returncode == 0, up.stderr
    (bed,) = lines(up.stdout)
    try:
        server = bed["nodes"]["server"]["addresses"][0]
        assert bed["nodes"]["client"]["enter"].startswith("ip netns exec mbt-")
        probe = mbtest(
            "probe", server, "--from", "client", "--testbed", bed["testbed"], "--json", "-n",
            "--probe", "plain_syn", "--probe", "mp_capable", "-m", "6", "-t", "1",
        )  # fmt: skip
        assert probe.returncode == 0, probe.stderr  # nothing on the path changes a probe
        documents = lines(probe.stdout)
        assert [d["probes"][0]["name"] for d in documents] == ["plain_syn", "mp_capable"]
        for document in documents:
            validate(document, "probe")
    finally:
        down = mbtest("topo", "down", bed["testbed"], "--json")
    assert down.returncode == 0 and lines(down.stdout)[0]["testbed"] == bed["testbed"]


def test_selfcheck_document_validates(tmp_path):
    run = mbtest("selfcheck", "--size", "20000", "--json", "-o", str(tmp_path))
    assert run.returncode == 0, run.stderr
    (document,) = lines(run.stdout)
    validate(document, "selfcheck")
    validate(json.loads((tmp_path / "selfcheck.json").read_text()), "selfcheck")
    for side in ("client", "server"):
        for record in lines((tmp_path / f"decoded.{side}.jsonl").read_text()):
            validate(record, "decode")


def _results(folder):
    return lines((Path(folder) / "results.jsonl").read_text())
