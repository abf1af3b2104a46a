"""A campaign on the testbed: twenty targets (addresses of the server), a closed port and a
bad line, four workers and one packet budget; every target once with its outcome;
interrupted and resumed, the same targets with the same outcomes as an uninterrupted run."""

import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mbtest.endpoints import listener
from mbtest.host import links
from mbtest.testbed import builder, topology
from tests.schemas import validate

ADDRESSES = [f"10.1.4.{i}" for i in range(10, 30)]


@pytest.fixture(scope="module")
def bed(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("namespace tests need root")
    server = None
    try:
        with builder.Testbed(topology.load("single-path")) as bed:
            for address in ADDRESSES:
                links.address(bed.server_ns, "eth0", address + "/24")
            server = listener.start(bed.server_ns, 80)
            targets = tmp_path_factory.mktemp("campaign") / "targets.txt"
            lines = [*ADDRESSES, "10.1.4.2,81", "not a host name", "# done"]
            targets.write_text("\n".join(lines) + "\n")
            yield bed, targets
    finally:
        if server is not None:
            server.wait(5)


def campaign(bed, targets, out, *extra, pps="400"):
    argv = [sys.executable, "-m", "mbtest.cli", "probe", "--targets", str(targets),
            "--from", "client", "--testbed", bed.run_id, "-w", "4", "--pps", pps, "-n",
            "-t", "1", "-o", str(out), *extra]  # fmt: skip
    return subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def outcomes(path) -> dict:
    lines = [json.loads(line) for line in path.read_text().splitlines()]
    return {
        (d["campaign"]["target"], d["campaign"]["port"]): d["campaign"]["outcome"] for d in lines
    }


def test_every_target_once_with_its_outcome(bed, tmp_path):
    testbed, targets = bed
    out = tmp_path / "campaign.jsonl"
    proc = campaign(testbed, targets, out)
    stdout, stderr = proc.communicate(timeout=300)
    assert proc.returncode == 1, stderr  # (the bad line is an error: a finding)
    assert "4 workers, a budget of 400 packets/s" in stderr and "22/22 targets" in stderr
    written = [json.loads(line) for line in out.read_text().splitlines()]
    assert [json.loads(line) for line in stdout.splitlines()] == written  # streamed alike
    assert len(written) == 22
    for line in written:
        validate(line, "campaign")
    assert all(d["campaign"]["pps"] == 400 and d["campaign"]["workers"] == 4 for d in written)
    seen = outcomes(out)
    assert seen == {
        **{(a, 80): "clean" for a in ADDRESSES},
        ("10.1.4.2", 81): "unreachable",  # a RST: nothing listens there
        (None, None): "error",
    }
    (bad,) = [d for d in written if d["campaign"]["outcome"] == "error"]
    assert bad["campaign"]["line"] == 22 and "names no host" in bad["error"]


def test_an_interrupted_campaign_resumed_gives_the_same_targets_and_outcomes(bed, tmp_path):
    testbed, targets = bed
    whole = tmp_path / "whole.jsonl"
    proc = campaign(testbed, targets, whole)
    proc.communicate(timeout=300)
    out = tmp_path / "resumed.jsonl"
    proc = campaign(testbed, targets, out, pps="40")  # slow enough to stop half way
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_text().splitlines()) >= 3:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "Traceback" not in stderr
    first = out.read_text().splitlines()
    assert 3 <= len(first) < 22, len(first)
    proc = campaign(testbed, targets, out, "--resume")
    _, stderr = proc.communicate(timeout=300)
    assert "already done" in stderr
    keyed = [k for k in outcomes(out) if k != (None, None)]
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    targets_written = [(d["campaign"]["target"], d["campaign"]["port"]) for d in lines]
    assert len([t for t in targets_written if t != (None, None)]) == len(keyed) == 21  # once each
    assert outcomes(out) == outcomes(whole)
