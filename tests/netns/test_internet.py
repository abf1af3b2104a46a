"""Campaigns over the emulated Internet (topologies/internet.toml: 100 targets behind a
shared core, with 8-byte quoting, ICMP rate-limiting, silent and ECMP routers, catalog
middleboxes, and targets without MPTCP or without answer), judged against its ground truth:
every observable change found at the right hop and field, none where none happened, every
unobservable one said so; one path per probe flow through ECMP; the same targets, outcomes
and changes after an interruption and a resume."""

import json
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from mbtest.middlebox.log import logs_in
from mbtest.observe.capture import Capture, capturing
from mbtest.packet.headers import parse_tcp
from mbtest.packet.pcap import read_frames
from mbtest.packet.quote import View
from mbtest.probe.groundtruth import judge
from mbtest.testbed import builder, topology
from tests.schemas import validate

TARGETS = 100
SEED = 17  # (22 paths hold middleboxes of 7 kinds, 8 of them behind 8-byte quotes; 12 ECMP)


@pytest.fixture(scope="module")
def internet(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("namespace tests need root")
    logs = tmp_path_factory.mktemp("internet")
    topo = topology.load("internet", {"targets": TARGETS, "seed": SEED})
    with builder.Testbed(topo, log_dir=str(logs)) as bed:
        yield bed, logs


def campaign(bed, targets, out, *extra, workers="8", pps="1000"):
    argv = [sys.executable, "-m", "mbtest.cli", "probe", "--targets", str(targets), "--from",
            "client", "--testbed", bed.run_id, "-w", workers, "--pps", pps, "-n", "-o", str(out),
            *extra]  # fmt: skip
    # (the results are read from -o: a pipe nobody reads would fill and stop the campaign)
    return subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)


@pytest.mark.parametrize("version", ["4", "6"])
def test_a_campaign_finds_what_the_ground_truth_says_and_says_what_it_cannot_see(
    internet, version, tmp_path, capsys
):
    bed, logs = internet
    out, pcaps = tmp_path / "campaign.jsonl", tmp_path / "pcap"
    proc = campaign(bed, logs / f"targets-v{version}.txt", out, "--pcap", str(pcaps))
    _, stderr = proc.communicate(timeout=600)
    assert proc.returncode == 1, stderr  # (changes were found: findings)
    assert f"{TARGETS}/{TARGETS} targets" in stderr and "Traceback" not in stderr
    results = [json.loads(line) for line in out.read_text().splitlines()]
    truth = json.loads((logs / "ground-truth.json").read_text())
    assert sorted(d["campaign"]["target"] for d in results) == sorted(
        t["address"][version] for t in truth["targets"]
    )
    for doc in results[:10]:
        validate(doc, "probe")
    bed.stop_middleboxes()  # (their logs complete)
    try:
        verdict = judge(truth, results, logs_in(str(logs)))
    finally:
        bed.processes.clear()
        bed.start_middleboxes()
    with capsys.disabled():
        print(f"\nIPv{version} campaign vs ground truth: {verdict.summary()}")
    assert verdict.targets == TARGETS
    assert verdict.observable >= 20 and verdict.unobservable >= 3  # (both kinds are tested)
    assert verdict.missed == [] and verdict.recall == 1.0
    assert verdict.false_positives == [] and verdict.precision == 1.0
    assert verdict.unsaid == [] and verdict.said_unobservable == verdict.unobservable
    assert verdict.hop_errors == []
    assert verdict.shortfalls == []  # (every target judged, its outcome as its truth says)
    by_address = {t["address"][version]: t for t in truth["targets"]}
    outcome = Counter()
    for doc in results:
        target, said = by_address[doc["campaign"]["target"]], doc["campaign"]["outcome"]
        outcome[(target["listen"], said)] += 1
        if target["listen"] == "silent":
            assert said == "no-answer", target
        elif target["listen"] == "closed":
            assert said == "unreachable", target
        elif target["listen"] == "tcp":
            assert said in ("no-mptcp", "not-observable", "changed"), (target, said)
        elif not target["middlebox"] and said != "not-observable":
            assert said == "clean", (target, said)
        frames = list(read_frames(doc["pcap"]))  # what was sent and what came back
        assert len(frames) > doc["probes"][0]["packets_sent"]
    assert outcome[("mptcp", "clean")] >= 20 and outcome[("mptcp", "changed")] >= 5


def flows_seen(pcap: str, client: str) -> dict[int, set]:
    """sport -> the IPv6 flow labels (or IPv4: {None}) of the client's packets captured."""
    seen: dict[int, set] = {}
    for frame in read_frames(pcap):
        data = frame.data[14:] if frame.linktype == 1 else frame.data
        seg = parse_tcp(data)
        if seg is None or seg.src != client:
            continue
        label = int.from_bytes(data[1:4], "big") & 0xFFFFF if seg.ip_version == 6 else None
        seen.setdefault(seg.sport, set()).add(label)
    return seen


@pytest.mark.parametrize("version", ["4", "6"])
def test_each_probe_flow_keeps_one_path_through_ecmp_and_the_result_says_when_hops_differ(
    internet, version, tmp_path
):
    bed, logs = internet
    truth = json.loads((logs / "ground-truth.json").read_text())
    client = truth["client"][version]
    chosen = [t for t in truth["targets"] if t["ecmp_ttl"] and t["listen"] == "mptcp"][:4]
    assert len(chosen) == 4
    differs = 0
    for target in chosen:
        (pair,) = [h["nodes"] for h in target["path"] if h["ttl"] == target["ecmp_ttl"]]
        captures = [
            Capture(bed.ns(node), "eth0", str(tmp_path / f"{node}.pcap"), bpf="tcp")
            for node in pair
        ]  # (eth0: each router's link toward the one that balances)
        out = tmp_path / f"{target['name']}.json"
        with capturing(captures):
            argv = [sys.executable, "-m", "mbtest.cli", "probe", target["address"][version],
                    "--from", "client", "--testbed", bed.run_id, "-n", "-o", str(out)]  # fmt: skip
            subprocess.run(argv, capture_output=True, timeout=120)
        doc = json.loads(out.read_text())
        seen = {node: flows_seen(c.path, client) for node, c in zip(pair, captures, strict=True)}
        routers = truth["routers"]
        for probe in doc["probes"]:
            sport = int(probe["sent"]["src"].rpartition(":")[2])
            took = [node for node in pair if sport in seen[node]]
            assert len(took) == 1, (target["name"], probe["name"], took)  # one path per flow
            labels = seen[took[0]][sport]
            assert len(labels) == 1  # IPv6: one flow label for the whole flow
            hop = next(h for h in probe["hops"] if h["ttl"] == target["ecmp_ttl"])
            if not hop["silent"]:
                assert hop["router"] in routers[took[0]]["addresses"]
        if doc.get("path_differs"):  # (from the pair on: IPv6 routers answer from the
            # interface the probe came in by, so the router after the pair differs too)
            said = doc["path_differs"]
            assert said[0]["ttl"] == target["ecmp_ttl"], said
            assert all(d["ttl"] >= target["ecmp_ttl"] for d in said), said
            assert all("per-flow load balancing" in d["text"] for d in said)
            differs += 1
    assert differs >= 1  # (six flows per target, four targets: both routers are used)


def changes_of(path) -> dict:
    """target -> (outcome, the fields each probe first saw change)."""
    out = {}
    for line in path.read_text().splitlines():
        doc = json.loads(line)
        fields = sorted(
            (p["name"], c["field"])
            for p in doc["probes"]
            for h in p["hops"]
            for c in h["changes"]
            if c.get("first")
        )
        out[doc["campaign"]["target"]] = (doc["campaign"]["outcome"], fields)
    return out


def test_an_interrupted_campaign_resumed_gives_the_same_targets_outcomes_and_changes(
    internet, tmp_path
):
    """On the paths without ICMP rate-limiting: a rate-limited router answers differently from
    one run to the next by design (its token bucket), so no two runs need agree there."""
    bed, logs = internet
    truth = json.loads((logs / "ground-truth.json").read_text())
    limited = {n for n, r in truth["routers"].items() if r["ratelimit_ms"]}
    steady = [t for t in truth["targets"] if not any(set(h["nodes"]) & limited for h in t["path"])][
        :40
    ]
    targets = tmp_path / "targets.txt"
    targets.write_text("".join(f"{t['address']['4']},{t['port']}\n" for t in steady))
    whole = tmp_path / "whole.jsonl"
    proc = campaign(bed, targets, whole)
    proc.communicate(timeout=600)
    out = tmp_path / "resumed.jsonl"
    proc = campaign(bed, targets, out, workers="4", pps="150")  # slow enough to stop half way
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline:
        if out.exists() and len(out.read_text().splitlines()) >= 5:
            break
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert 5 <= len(out.read_text().splitlines()) < len(steady), stderr
    proc = campaign(bed, targets, out, "--resume")
    _, stderr = proc.communicate(timeout=600)
    assert "already done" in stderr
    lines = out.read_text().splitlines()
    assert len(lines) == len({json.loads(line)["campaign"]["target"] for line in lines})
    assert changes_of(out) == changes_of(whole)
    assert any(fields for _, fields in changes_of(whole).values())  # (changes were compared)


def mbtest(*args, timeout=300):
    argv = [sys.executable, "-m", "mbtest.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout)


def test_topo_up_writes_the_truth_and_targets_a_campaign_uses_and_judge_reads(tmp_path):
    up = mbtest("topo", "up", "internet", "--param", "targets=8", "--param", "seed=3", "--json")
    assert up.returncode == 0, up.stderr
    described = json.loads(up.stdout)
    run_id, generated = described["testbed"], described["generated"]
    try:
        truth = json.loads(Path(generated["ground_truth"]).read_text())
        assert truth["params"]["targets"] == 8
        out = tmp_path / "c.jsonl"
        probed = mbtest("probe", "--targets", generated["targets"]["6"], "--from", "client",
                        "--testbed", run_id, "-n", "-o", str(out))  # fmt: skip
        assert probed.returncode in (0, 1), probed.stderr
        judged = mbtest("topo", "judge", str(out), run_id)
        assert judged.returncode == 0, judged.stdout + judged.stderr
        assert "recall 100%" in judged.stdout and "precision 100%" in judged.stdout
        bad = tmp_path / "bad.jsonl"
        bad.write_text('{"campaign": "?"}\nnot json\n')
        judged = mbtest("topo", "judge", str(bad), run_id)
        assert judged.returncode == 1 and "could not be judged" in judged.stdout
        assert "Traceback" not in judged.stderr
    finally:
        down = mbtest("topo", "down", run_id)
    assert down.returncode == 0, down.stderr
    assert not os.path.exists(generated["ground_truth"])  # (the testbed's folder went with it)


@pytest.mark.parametrize("version", [4, 6])
def test_a_campaign_runs_sockets_read_only_what_concerns_their_target(internet, version):
    """Each raw socket gets a copy of every ICMP error: a run's kernel filter keeps only the
    errors quoting a packet to its target (and segments from it)."""
    from mbtest.host import netns
    from mbtest.probe import wire
    from mbtest.probe.rawio import RawSockets

    bed, logs = internet
    truth = json.loads((logs / "ground-truth.json").read_text())
    client = truth["client"][str(version)]
    mine, other = (t["address"][str(version)] for t in truth["targets"][:2])

    def exchange():
        filtered, everything = RawSockets(version, about=mine), RawSockets(version)
        try:
            for dst in (mine, other):  # (expires at hop 1: core1 answers)
                seg = wire.Segment(client, dst, 40000, 80, 7, flags="S")
                filtered.send(wire.packet(seg, 1, 1, 0), dst)
            deadline = time.monotonic() + 1.0
            got, all_got = [], []
            while time.monotonic() < deadline and (len(got) < 1 or len(all_got) < 2):
                got += filtered.receive(time.monotonic() + 0.1)
                all_got += everything.poll()
            time.sleep(0.2)
            got += filtered.poll()
            all_got += everything.poll()
            return got, all_got
        finally:
            filtered.close()
            everything.close()

    got, all_got = netns.call_in(bed.ns("client"), exchange)
    quoted = [View(a.icmp.quote).ip_fields()["dst"] for a in got if a.icmp]
    assert quoted == [mine]
    assert {View(a.icmp.quote).ip_fields()["dst"] for a in all_got if a.icmp} == {mine, other}
