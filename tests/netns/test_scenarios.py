"""Scenarios on the real kernel: a representative subset of the default matrix, asserting the
observed facts and not only the verdicts; and the matrix command itself."""

import json
import signal
import subprocess
import sys
import time

import pytest

from mbtest.experiment import grid
from mbtest.experiment.cell import run_scenario
from mbtest.host import netns
from mbtest.observe.decode import decode_capture

GRID = {cell.name: cell for cell in grid.default_grid()}


def run(name, tmp_path):
    result = run_scenario(GRID[name], str(tmp_path))
    facts = {k: v["value"] for k, v in result["facts"].items()}
    return result, facts


def test_baseline(tmp_path):
    result, facts = run("baseline", tmp_path)
    assert result["verdict"] == "as-expected"
    assert (
        facts["mptcp_negotiated"]
        and not facts["fallback_at_handshake"]
        and not facts["fallback_later"]
    )
    assert facts["data_c2s"] == facts["data_s2c"] == "intact"


def test_option_stripped_in_syn(tmp_path):
    result, facts = run("strip-mpc-syn-nop", tmp_path)
    assert result["verdict"] == "as-expected"
    assert facts["fallback_at_handshake"] and facts["mptcp_at_end"] == {
        "client": False,
        "server": False,
    }
    assert facts["middlebox_triggered"] and facts["data_c2s"] == "intact"


@pytest.mark.parametrize("name", ["payload-flip-c2s-csum", "payload-flip-s2c-csum"])
def test_a_flipped_byte_under_checksums_stalls_and_the_cell_says_why(tmp_path, name):
    """Linux sends MP_FAIL and an infinite mapping, then builds segments its own path MTU
    refuses: the transfer never completes. The verdict names that mechanism."""
    result, facts = run(name, tmp_path)
    assert facts["mp_fail_sent"] >= 1 and facts["checksum_errors"] >= 1
    assert facts["infinite_mapping_sent"] >= 1 or facts["fallback_later"]
    assert result["verdict"] == "deviates"
    assert facts["refused_locally"] > 0  # the decisive fact
    assert any(w.startswith("refused_locally is") for w in result["why"])
    if facts["stalled"]:  # and the stall is explained by its mechanism, from evidence
        stall = facts["stall"]
        assert "after MP_FAIL" in stall and "refused locally" in stall
        mechanisms = ("path MTU", "no subflow has data in flight", "RTO backoffs")
        assert any(m in stall for m in mechanisms), stall
    if "c2s" in name:  # the selftest corrupts the client's data: it expects completion
        (infinite_map,) = [r for r in result["references"] if "Infinite map" in r["test"]]
        assert infinite_map["agrees"] is False and "refused" in infinite_map["explanation"]


def test_payload_flip_with_checksums_on_two_subflows(tmp_path):
    result, facts = run("payload-flip-two-subflows-csum", tmp_path)
    assert result["verdict"] == "as-expected"
    assert facts["mp_fail_sent"] >= 1 and facts["checksum_errors"] >= 1
    assert facts["data_c2s"] == facts["data_s2c"] == "intact"


def test_mp_join_dropped(tmp_path):
    result, facts = run("drop-join-syn", tmp_path)
    assert result["verdict"] == "as-expected"
    assert facts["joins_attempted"] >= 1 and facts["joins_completed"] == 0
    assert facts["data_c2s"] == "intact"


def test_nat(tmp_path):
    result, facts = run("nat", tmp_path)
    assert result["verdict"] == "as-expected"
    assert facts["mptcp_negotiated"] and facts["data_s2c"] == "intact"


def test_add_addr_stripped_from_the_first_packet_is_a_permitted_linux_fallback(tmp_path):
    result, facts = run("add-addr-stripped", tmp_path)
    assert result["verdict"] == "permitted-variant"
    assert result["outcome"]["name"] == "fallback on a first packet without DSS"
    assert facts["option_removed_from"] == ["first packet after the handshake (pure ACK)"]
    assert facts["fallback_later"] and facts["add_addr_received"] == 0
    assert facts["data_c2s"] == facts["data_s2c"] == "intact"


def test_add_addr_stripped_later_leaves_mptcp_running(tmp_path):
    result, facts = run("add-addr-stripped-late", tmp_path)
    assert result["verdict"] == "as-expected"
    assert facts["option_removed_from"] == ["pure ACK"]
    assert not facts["fallback_later"] and facts["mptcp_at_end"] == {"client": True, "server": True}
    assert facts["add_addr_received"] == 0 and facts["joins_completed"] == 0


def test_add_addr_echo_dropped_is_retransmitted_within_the_cell(tmp_path):
    result, facts = run("add-addr-echo-dropped", tmp_path)
    assert result["verdict"] == "as-expected"
    assert facts["add_addr_sent"] >= 2
    doc = json.loads((tmp_path / "run.json").read_text())
    assert doc["hold"]["met"] and doc["hold"]["seconds"] < 4.0  # the 1 s timer, not luck
    (reference,) = [r for r in result["references"] if "add_addr_timeout" in r["test"]]
    assert reference["agrees"] is True


def test_coalescing_inside_a_mapping_leaves_mptcp_alone(tmp_path):
    result, facts = run("coalesce-within-mapping", tmp_path)
    assert result["verdict"] == "as-expected"
    assert facts["mapping_crossed"] == 0 and not facts["fallback_later"]
    log = (tmp_path / "middlebox-slot.jsonl").read_text()
    assert '"field": "coalesce"' in log  # it did merge segments


def test_coalescing_across_mappings_is_a_permitted_fallback_with_its_evidence(tmp_path):
    result, facts = run("coalesce-across-mappings", tmp_path)
    assert result["verdict"] == "permitted-variant"
    assert result["outcome"]["name"] == "fallback after data outside its mapping"
    assert facts["mapping_crossed"] >= 1 and facts["fallback_later"]
    crossed = result["facts"]["mapping_crossed"]["evidence"]
    assert "server.pcap frame" in crossed and "carry the mapping of" in crossed
    assert facts["data_c2s"] == "intact"


@pytest.mark.parametrize("segment", [2, 100, 200], ids=["early", "middle", "late"])
def test_payload_changes_are_found_where_the_application_received_them(tmp_path, segment):
    """Without checksums a flipped byte is not detectable by MPTCP: the data facts must say
    how many bytes changed and where, as the application received them."""
    from mbtest.experiment.grid import scenario
    from mbtest.middlebox.base import Cell

    cell = Cell("flip", "payload-undetected", f"segment={segment},direction=c2s,count=3")
    result = run_scenario(scenario("payload-flip", cell), str(tmp_path))
    facts = {k: v["value"] for k, v in result["facts"].items()}
    assert result["verdict"] == "as-expected"
    log = [
        json.loads(line) for line in (tmp_path / "middlebox-slot.jsonl").read_text().splitlines()
    ]
    (flip,) = log
    changed = facts["changed_bytes"]["c>s"]
    assert changed["bytes"] == 3 == len(bytes.fromhex(flip["before"]))
    ((start, end),) = changed["ranges"]
    assert end - start == 3
    syn = next(r for r in decode_capture(str(tmp_path / "client.pcap")) if r.tcp_flags == "S")
    assert start == (flip["seq"] - syn.seq - 1) & 0xFFFFFFFF  # the offset of that segment
    assert facts["data_c2s"] == "changed" and facts["data_s2c"] == "intact"


def test_matrix_command_writes_results_and_exit_status(tmp_path):
    argv = [sys.executable, "-m", "mbtest.cli", "matrix", "--middlebox", "none"]
    argv += ["--topology", "single-path", "--ip", "4", "-o", str(tmp_path)]
    run_ = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert run_.returncode == 0, run_.stderr
    (line,) = (tmp_path / "results.jsonl").read_text().splitlines()
    cell = json.loads(line)
    assert cell["schema"] == "mbtest.cell/2" and cell["verdict"] == "as-expected"
    assert (tmp_path / cell["dir"] / "client.pcap").exists()
    assert json.loads((tmp_path / "matrix.json").read_text())["verdicts"] == {"as-expected": 1}


def test_ctrl_c_stops_the_matrix_and_keeps_finished_results(tmp_path):
    before = set(netns.listed())
    argv = [
        sys.executable,
        "-m",
        "mbtest.cli",
        "matrix",
        "--topology",
        "single-path",
        "-j",
        "1",
        "-o",
        str(tmp_path),
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(tmp_path.glob("*/cell.json"))) < 2:
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "interrupted" in err
    results = [json.loads(x) for x in (tmp_path / "results.jsonl").read_text().splitlines()]
    assert len(results) >= 2 and all(r["verdict"] != "error" for r in results[:2])
    time.sleep(0.5)
    assert set(netns.listed()) == before


@pytest.mark.parametrize(
    "args,message",
    [
        (["--middlebox", "frob"], "unknown middlebox behaviour 'frob'"),
        (["--topology", "nowhere"], "unknown topology 'nowhere'"),
        (["--topology", "long-path"], "no cell of the matrix matches these filters"),
    ],
)
def test_matrix_bad_filters_are_one_line(args, message):
    run_ = subprocess.run(
        [sys.executable, "-m", "mbtest.cli", "matrix", *args], capture_output=True, text=True
    )
    assert run_.returncode == 2 and message in run_.stderr and run_.stderr.count("\n") == 1
