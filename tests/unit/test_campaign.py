"""Campaigns without root: targets files read line by line (a bad line is that line's
error, never the campaign's), one packet budget that holds however many take from it, a
target's outcome in one word, at most N targets in flight, and --resume skipping what was
written."""

import json
import threading
from pathlib import Path

import pytest

from mbtest.probe import campaign

DATA = Path(__file__).parent.parent / "data"


def test_targets_are_read_in_every_form_and_a_bad_line_is_its_own_error():
    lines = [
        "# a comment", "", "example.net", "10.0.0.1,443", "[fd00::1]:8080", "fd00::2",
        '{"host": "10.0.0.2", "port": 25}', "two words", "10.0.0.3,http", "10.0.0.4,70000",
        '{"port": 1}', "[" * 5000, '{"host": "h", "port": true}', "fd00:::zz",
    ]  # fmt: skip
    read = list(campaign.read_targets(lines, 80))
    good = [(t.host, t.port, t.line) for t in read if isinstance(t, campaign.Target)]
    assert good == [
        ("example.net", 80, 3), ("10.0.0.1", 443, 4), ("fd00::1", 8080, 5),
        ("fd00::2", 80, 6), ("10.0.0.2", 25, 7),
    ]  # fmt: skip
    bad = [(e.line, str(e)) for e in read if isinstance(e, campaign.TargetLineError)]
    assert [line for line, _ in bad] == [8, 9, 10, 11, 12, 13, 14]
    assert "names no host" in bad[0][1] and "'http' is not a number" in bad[1][1]
    assert "out of range" in bad[2][1] and 'needs a "host"' in bad[3][1]
    assert all(text.startswith(f"targets line {line}: ") for line, text in bad)


def test_the_budget_holds_however_many_threads_take_from_it(monkeypatch):
    clock = {"now": 0.0}
    lock = threading.Lock()

    def sleep(seconds):
        with lock:
            clock["now"] += seconds

    monkeypatch.setattr(campaign.time, "monotonic", lambda: clock["now"])
    monkeypatch.setattr(campaign.time, "sleep", sleep)
    budget = campaign.PacketBudget(100, burst=5)
    threads = [
        threading.Thread(target=lambda: [budget.take() for _ in range(50)]) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert budget.taken == 400
    assert budget.taken <= budget.burst + 100 * clock["now"] + 1  # never above the rate
    with pytest.raises(campaign.MbtestError):
        campaign.PacketBudget(0)


def _doc(**destination):
    probe = {"name": "mp_capable", "destination": destination, "first_change": None}
    return {"probes": [probe]}


def test_a_target_is_summed_up_in_one_word():
    recorded = json.loads((DATA / "probe-server.json").read_text())
    assert campaign.outcome(recorded) == "changed"  # the server saw MP_CAPABLE stripped back
    assert campaign.outcome(_doc(reached=True, kind="SYN/ACK", mptcp=["MP_CAPABLE v1"])) == "clean"
    assert campaign.outcome(_doc(reached=True, kind="SYN/ACK", mptcp=[])) == "no-mptcp"
    assert campaign.outcome(_doc(reached=True, kind="RST")) == "unreachable"
    assert campaign.outcome(_doc(reached=True, kind="ICMP")) == "unreachable"
    assert campaign.outcome(_doc(reached=False, kind="silence")) == "no-answer"
    changed = _doc(reached=True, kind="SYN/ACK")
    changed["probes"][0]["first_change"] = {"ttl": 3}
    assert campaign.outcome(changed) == "changed"
    failed = _doc(reached=True, kind="SYN/ACK")
    failed["probes"][0]["error"] = "probe x failed"
    assert campaign.outcome(failed) == "error"
    assert campaign.outcome({"error": "no route", "unreachable": True}) == "unreachable"
    assert campaign.outcome({"error": "cannot resolve"}) == "error"
    hidden = _doc(reached=True, kind="SYN/ACK", mptcp=["MP_CAPABLE v1"])
    hidden["probes"][0]["observability"] = {"complete": False, "hidden": [{"to_ttl": 3}]}
    assert campaign.outcome(hidden) == "not-observable"  # never "clean" behind short quotes
    hidden["probes"][0]["destination"]["mptcp"] = []
    assert campaign.outcome(hidden) == "not-observable"  # (stripped there, or no MPTCP?)
    hidden["probes"][0]["first_change"] = {"ttl": 2}
    assert campaign.outcome(hidden) == "changed"


def test_the_outcome_words_are_the_schemas():
    from mbtest.host.datafiles import shipped

    part = json.loads((shipped("schemas") / "campaign.schema.json").read_text())["$defs"]["part"]
    assert tuple(part["properties"]["outcome"]["enum"]) == campaign.OUTCOMES


def test_a_targets_pcap_is_named_after_it_and_holds_only_its_packets(tmp_path):
    from mbtest.packet.pcap import read_frames
    from mbtest.probe.rawio import Recorder
    from mbtest.probe.run import write_pcap

    assert campaign.pcap_path("d", "fd00::2", 80) == "d/fd00__2_80.pcap"
    assert campaign.pcap_path("d", "a/b", 81) == "d/a_b_81.pcap"
    recorder = Recorder("fd00:9::2", "fd00::1")
    probe = bytes.fromhex("6000000000140640") + bytes(32) + bytes(20)
    recorder.sent(probe)
    tcp = bytes(20)
    recorder.received(tcp, "fd00:9::2", icmp=False, version=6)  # from the target
    recorder.received(tcp, "fd00:7::2", icmp=False, version=6)  # another target's
    quoted = bytes.fromhex("6000000000140640") + bytes(16) + _v6("fd00:9::2") + bytes(20)
    recorder.received(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + quoted, "fd00:1::1", True, 6)
    other = bytes.fromhex("6000000000140640") + bytes(16) + _v6("fd00:7::2") + bytes(20)
    recorder.received(bytes([3, 0, 0, 0, 0, 0, 0, 0]) + other, "fd00:1::1", True, 6)
    path = tmp_path / "t.pcap"
    write_pcap(str(path), recorder.frames)
    frames = list(read_frames(path))
    assert [len(f.data) for f in frames] == [len(probe), 40 + 20, 40 + 8 + len(quoted)]
    assert frames[1].data[6] == 6 and frames[2].data[6] == 58  # headers put back


def _v6(address: str) -> bytes:
    import ipaddress

    return ipaddress.IPv6Address(address).packed


def test_at_most_n_targets_are_in_flight_each_once_and_resume_skips_what_was_written():
    targets = list(campaign.read_targets([f"10.0.0.{i}" for i in range(1, 31)] + ["bad line"], 80))
    in_flight, most, seen = [0], [0], []
    lock = threading.Lock()

    def probe(target, budget):
        with lock:
            in_flight[0] += 1
            most[0] = max(most[0], in_flight[0])
        budget.take()
        with lock:
            in_flight[0] -= 1
            seen.append(target.key)
        return _doc(reached=True, kind="SYN/ACK", mptcp=["MP_CAPABLE v1"])

    written = []
    plan = campaign.Campaign(targets, 4, campaign.PacketBudget(10000))
    assert campaign.run(plan, probe, written.append) is None
    assert most[0] <= 4 and sorted(seen) == sorted(t.key for t in targets[:30])
    assert plan.counts == {"clean": 30, "error": 1} and len(written) == 31
    lines = [json.dumps(d) for d in written[:10]] + ["not json", '{"campaign": 3}']
    done = campaign.already_done(lines)
    assert len(done) == 10
    again = campaign.Campaign(targets, 4, campaign.PacketBudget(10000), done)
    seen.clear()
    campaign.run(again, probe, lambda doc: None)
    assert len(seen) == 20 and not set(seen) & done  # (the bad line is said again)
    assert "30/31" not in campaign.progress_line(again) and "21/21" in campaign.progress_line(again)


def test_a_worker_that_fails_says_so_for_its_target():
    def probe(target, budget):
        raise RuntimeError("boom")

    written = []
    plan = campaign.Campaign(
        list(campaign.read_targets(["10.0.0.1"], 80)), 2, campaign.PacketBudget(10)
    )
    campaign.run(plan, probe, written.append)
    assert written[0]["campaign"]["outcome"] == "error" and "boom" in written[0]["error"]
    assert written[0]["schema"] == "mbtest.campaign/2"


def test_a_campaign_file_is_reported_with_its_unprobed_targets(tmp_path):
    from mbtest import jsondoc
    from mbtest.report.render import render

    probed = json.loads((DATA / "probe-server.json").read_text())
    part = {"target": "10.200.9.2", "port": 8080, "line": 1, "workers": 2, "pps": 50}
    probed["campaign"] = {**part, "outcome": campaign.outcome(probed)}
    bad = {"schema": "mbtest.campaign/2", "error": "targets line 2: 'a b' names no <host>",
           "probes": [], "campaign": {**part, "target": None, "port": None, "line": 2,
                                      "outcome": "error"}}  # fmt: skip
    from tests.schemas import validate

    validate(probed, "campaign")
    validate(bad, "campaign")
    source = tmp_path / "campaign.jsonl"
    source.write_text(jsondoc.dumps(probed) + "\n" + jsondoc.dumps(bad) + "\n")
    html = Path(render([str(source)], str(tmp_path / "report.html"))).read_text()
    assert "10.200.9.2" in html and "targets line 2" in html
    assert "names no &lt;host&gt;" in html and "<host>" not in html
