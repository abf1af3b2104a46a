"""Every kind of bad input is one sentence naming what is wrong, a non-zero exit, no
traceback, and nothing left behind (no results folder, no namespace)."""

import os
import subprocess
import sys
from pathlib import Path

import pytest

TOPOLOGY = """
name = "t"
[[nodes]]
name = "client"
role = "client"
{client}
[[nodes]]
name = "server"
role = "server"
[[links]]
a = {{ node = "client", ifname = "eth0", addresses = ["10.9.0.1/24"] }}
b = {{ node = "server", ifname = "eth0", addresses = ["10.9.0.2/24"] }}
"""

TOPOLOGIES = {
    "routes-not-a-list": ("routes = 5", "routes must be an array of tables"),
    "route-via-a-number": ('routes = [{ to = "default", via = 7 }]', "route via must be a string"),
    "limits-not-a-table": ("limits = 3", "limits must be a table"),
    "limit-a-string": ('limits = { subflows = "two" }', "limit subflows must be an integer"),
    "endpoint-port": ('endpoints = [{ address = "10.9.0.1", port = 70000 }]',
                      "endpoint port must be an integer from 1 to 65535"),
    "endpoint-flags": ('endpoints = [{ address = "10.9.0.1", flags = "signal" }]',
                       "endpoint flags must be a list"),
    "sysctl-value": ('sysctls = { "net.ipv4.ip_forward" = ["1"] }', "is not a plain value"),
    "middlebox-on-client": ('middlebox = "pass"', "only a slot holds a middlebox"),
}  # fmt: skip

SCENARIOS = {
    "bytes-a-word": ('c2s_bytes = "lots"', "c2s_bytes = 'lots' is not allowed"),
    "port-too-big": ("port = 70000", "port = 70000 is not allowed"),
    "port-zero": ("port = 0", "port = 0 is not allowed"),
    "bytes-negative": ("s2c_bytes = -5", "s2c_bytes = -5 is not allowed"),
    "chunk-zero": ("chunk = 0", "chunk = 0 is not allowed"),
    "deadline-nan": ("deadline = nan", "deadline = nan is not allowed"),
    "name-newline": ('name = "x\\n"', "name = 'x\\n' is not allowed"),
    "checksums-a-number": ("checksums = 1", "checksums = 1 is not allowed"),
    "middleboxes-a-list": ('middleboxes = ["pass"]', "middleboxes = ['pass'] is not allowed"),
    "unknown-key": ("colour = 1", "unknown key 'colour'"),
    "bad-behaviour-value": ('middleboxes = { slot = "coalesce:hold_ms=nan" }',
                            "parameter hold_ms='nan' is not valid"),
    "mangle-out-of-range": ('middleboxes = { slot = "mangle-option:field=MP_CAPABLE.version,'
                            'value=99" }', "does not suit field MP_CAPABLE.version"),
    "empty-find": ('middleboxes = { slot = "payload-rewrite:find=" }',
                   "parameter find='' is not valid"),
    "spec-newline": ('middleboxes = { slot = "pass\\n" }', "contains a control character"),
}  # fmt: skip


def mbtest(*args, cwd):
    return subprocess.run(
        [sys.executable, "-m", "mbtest.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=cwd,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )


def one_clear_line(run, message, cwd):
    assert run.returncode == 2, (run.returncode, run.stderr)
    assert "Traceback" not in run.stderr + run.stdout
    said = [line for line in run.stderr.splitlines() if line.startswith(("mbtest:", "Error:"))]
    assert len(said) == 1, run.stderr
    assert message in run.stderr, run.stderr
    assert not (Path(cwd) / "reports").exists(), "a results folder was left for nothing"


@pytest.mark.parametrize("case", sorted(TOPOLOGIES))
def test_bad_topology_files(tmp_path, case):
    text, message = TOPOLOGIES[case]
    path = tmp_path / "t.toml"
    path.write_text(TOPOLOGY.format(client=text))
    run = mbtest("topo", "run", str(path), cwd=tmp_path)
    one_clear_line(run, message, tmp_path)


@pytest.mark.parametrize("case", sorted(SCENARIOS))
def test_bad_scenario_files(tmp_path, case):
    text, message = SCENARIOS[case]
    path = tmp_path / "s.toml"
    path.write_text(f'topology = "single-path"\n{text}\n')
    run = mbtest("run", str(path), cwd=tmp_path)
    one_clear_line(run, message, tmp_path)


@pytest.mark.parametrize(
    "args,message",
    [
        (["topo", "run", "long-path", "--param", "routers=many"], "parameter routers must be an"),
        (["topo", "run", "long-path", "--param", "colour=red"], "unknown parameter 'colour'"),
        (["topo", "run", "long-path", "--param", "routers"], "is not KEY=VALUE"),
        (["topo", "down", "../../etc"], "is not a run id"),
        (["topo", "down", "/run/mbtest/x"], "is not a run id"),
        (["topo", "down", "abc123\n"], "is not a run id"),
        (["probe", "10.0.0.1", "--from", "client", "--testbed", "/tmp"], "is not a run id"),
        (["run", "--middlebox", "slot=nosuch"], "unknown middlebox behaviour 'nosuch'"),
        (["run", "--middlebox", "slot"], "is not SLOT=NAME"),
        (["run", "--middlebox", "slot=pass", "--middlebox", "slot=pass"], "two middleboxes"),
        (["run", "--expect", "magic"], "unknown expectation 'magic'"),
        (["run", "nowhere.toml"], "does not exist"),
        (["decode", "/dev/zero"], "is not a regular file"),
        (["decode", "/tmp"], "is a directory"),
        (["report", "/dev/null"], "is not a regular file"),
        (["middlebox", "show", "nosuch"], "unknown middlebox behaviour"),
    ],
)
def test_bad_arguments(tmp_path, args, message):
    one_clear_line(mbtest(*args, cwd=tmp_path), message, tmp_path)


def test_output_places_are_checked_before_any_work(tmp_path):
    folder = tmp_path / "a-folder"
    folder.mkdir()
    afile = tmp_path / "a-file"
    afile.write_text("")
    for args, message in (
        (["probe", "10.0.0.1", "-o", str(folder)], "is a directory"),
        (["probe", "10.0.0.1", "--html", str(tmp_path / "no" / "r.html")], "does not exist"),
        (["run", "-o", str(afile)], "is a file, not a directory"),
        (["matrix", "-o", str(afile)], "is a file, not a directory"),
        (["selfcheck", "-o", str(afile)], "is a file, not a directory"),
    ):
        one_clear_line(mbtest(*args, cwd=tmp_path), message, tmp_path)


def test_a_fifo_is_refused_not_read(tmp_path):
    fifo = tmp_path / "capture.pcap"
    os.mkfifo(fifo)
    run = mbtest("decode", str(fifo), cwd=tmp_path)  # (reading it would hang: timeout 60)
    one_clear_line(run, "is not a regular file", tmp_path)


@pytest.mark.parametrize(
    "content,message",
    [
        ("", "holds no cell or probe result"),
        ("not json\n", "line 1 is not JSON"),
        ('{"verdict": "as-expected"}\n', "no scenario with a name"),
        ('{"scenario": {"name": 5}, "verdict": "x"}\n', "no scenario with a name"),
        ('{"scenario": {"name": "a"}, "verdict": "x", "facts": [1]}\n', "of the wrong type"),
        ('{"schema": "mbtest.probe/1", "target": {}, "probes": [{"hops": 3}]}', "has no name"),
    ],
)
def test_bad_report_inputs(tmp_path, content, message):
    path = tmp_path / "results.jsonl"
    path.write_text(content)
    one_clear_line(mbtest("report", str(path), cwd=tmp_path), message, tmp_path)
    assert not (tmp_path / "report.html").exists()
