"""The command line: decoded output, and one clear line with a non-zero exit on bad input."""

import json
import subprocess
import sys
from pathlib import Path

import pytest

from mbtest.probe import loader

PCAP = Path(__file__).parent.parent / "data" / "exchange-v4-csum.client.pcap"


def mbtest(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "mbtest.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        **kwargs,
    )


def test_decode_json_lines_carry_every_field():
    run = mbtest("decode", str(PCAP), "--json")
    assert run.returncode == 0, run.stderr
    lines = [json.loads(line) for line in run.stdout.splitlines()]
    syn = lines[0]
    assert syn["direction"] == "c>s" and syn["tcp_flags"] == "S"
    assert (
        syn["mptcp"][0]["subtype"] == "MP_CAPABLE" and syn["mptcp"][0]["checksum_required"] is True
    )
    join = next(line for line in lines if line["mptcp"][0]["subtype"] == "MP_JOIN")
    assert join["mptcp"][0]["token"] == 1434025233
    rst = lines[-1]
    assert [o["option"] for o in rst["mptcp"]] == ["MpFastclose", "MpTcpRst"]
    assert rst["mptcp"][1]["reason_name"] == "UNSPECIFIED"


def test_decode_table_lists_the_options():
    run = mbtest("decode", str(PCAP), env={"COLUMNS": "200", "PATH": "/usr/bin:/bin"})
    assert run.returncode == 0, run.stderr
    names = ("MP_CAPABLE v1", "MP_JOIN SYN/ACK", "ADD_ADDR", "REMOVE_ADDR", "MP_PRIO")
    for name in (*names, "MP_FASTCLOSE"):
        assert name in run.stdout
    assert "10.11.0.1:" in run.stdout


@pytest.mark.parametrize(
    "content,message",
    [
        (None, "no such file"),
        (b"", "is empty, not a capture file"),
        (b"GIF89a not a capture at all", "is not a pcap or pcapng file"),
        (PCAP.read_bytes()[:-7], "is truncated in packet"),
    ],
)
def test_decode_bad_files_one_line_non_zero(tmp_path, content, message):
    path = tmp_path / "in.pcap"
    if content is not None:
        path.write_bytes(content)
    run = mbtest("decode", str(path))
    assert run.returncode == 2
    assert run.stderr.count("\n") == 1 and message in run.stderr
    assert "Traceback" not in run.stderr + run.stdout


def test_bad_parameters_are_one_clear_error():
    run = mbtest("selfcheck", "--size", "0")
    assert run.returncode == 2
    assert "Invalid value for '--size'" in run.stderr and "Traceback" not in run.stderr
    run = mbtest("no-such-command")
    assert run.returncode == 2 and "No such command" in run.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["224.0.0.1"], "multicast"),
        (["0.0.0.0"], "unspecified"),
        (["255.255.255.255"], "broadcast"),
        (["no-such-host.invalid"], "cannot resolve"),
        (["10.0.0.1", "--probe", "nosuch"], "unknown probe 'nosuch'"),
        (["10.0.0.1", "--max-ttl", "0"], "--max-ttl"),
        (["10.0.0.1", "-4", "-6"], "choose one of -4 and -6"),
        (["::1", "-4"], "cannot resolve"),
        ([], "needs a TARGET"),
    ],
)
def test_probe_bad_input_is_one_clear_line(args, message):
    run = mbtest("probe", *args)
    assert run.returncode != 0
    assert message in run.stderr and "Traceback" not in run.stderr
    said = [line for line in run.stderr.splitlines() if line.startswith(("mbtest:", "Error:"))]
    assert len(said) == 1, run.stderr  # one sentence (click adds its usage line to its own)


def test_probe_files_that_cannot_be_used_are_one_clear_line(tmp_path):
    broken = tmp_path / "broken.py"
    broken.write_text("def build(session:\n")
    empty = tmp_path / "empty.py"
    empty.write_text('"""No build function."""\n')
    for path, message in ((broken, "line 1"), (empty, "defines no build(session)")):
        run = mbtest("probe", "10.0.0.1", "--probe", str(path))
        assert run.returncode == 2 and message in run.stderr, run.stderr
        assert "Traceback" not in run.stderr


def test_probe_list_names_every_probe():
    run = mbtest("probe", "--list")
    assert run.returncode == 0
    listed = {line.split()[0]: line.split()[1] for line in run.stdout.splitlines()}
    path = ["add_addr", "dss", "mp_capable", "mp_capable_v0", "mp_join", "plain_syn"]
    assert sorted(n for n, suite in listed.items() if suite == "path") == path
    conformance = sorted(n for n, suite in listed.items() if suite == "conformance")
    assert conformance == sorted(loader.suite("conformance")) and len(conformance) == 12


def test_matrix_list_selects_cells_by_name_over_both_ip_versions():
    run = mbtest("matrix", "--list", "--cell", "payload-rewrite-csum")
    assert run.returncode == 0, run.stderr
    names = [line.split("\t")[0] for line in run.stdout.splitlines()]
    assert names == ["payload-rewrite-csum", "payload-rewrite-csum-ipv6"]
    run = mbtest("matrix", "--list", "--cell", "payload-rewrite-csum-ipv6", "--ip", "6")
    assert [line.split("\t")[0] for line in run.stdout.splitlines()] == names[1:]
    run = mbtest("matrix", "--cell", "payload-rewrite-csum", "--cell", "no-such-cell")
    assert run.returncode == 2 and "unknown cell 'no-such-cell'" in run.stderr
    assert "Traceback" not in run.stderr


def test_run_cell_names_a_cell_of_the_matrix():
    run = mbtest("run", "--cell", "no-such-cell", "-6")
    assert run.returncode == 2 and "unknown cell 'no-such-cell-ipv6'" in run.stderr
    run = mbtest("run", "--cell", "coalesce-across-mappings", "scenario.toml")
    assert run.returncode == 2 and "not both" in run.stderr
