"""The classifier on evidence recorded from real runs: facts, their evidence, verdicts."""

import json
from pathlib import Path

import pytest

from mbtest.experiment.scenario import Scenario, ScenarioError, from_dict
from mbtest.verdict import expect, facts
from mbtest.verdict.decide import decide
from mbtest.verdict.evidence import Evidence

CELLS = Path(__file__).parent.parent / "data" / "cells"


def recorded(name):
    directory = CELLS / name
    doc = json.loads((directory / "run.json").read_text())
    scenario = from_dict(json.loads((directory / "scenario.json").read_text()))
    observed = facts.observe(Evidence.of(str(directory), doc))
    decided = decide(expect.EXPECTATIONS[scenario.expect], observed, bool(scenario.middleboxes))
    return observed, decided


def value(observed, name):
    return observed[name].value


def test_baseline_is_mptcp_with_intact_data():
    observed, decided = recorded("baseline")
    assert (decided["verdict"], decided["why"], decided["outcome"]["name"]) == (
        "as-expected",
        [],
        "main",
    )
    assert value(observed, "mptcp_negotiated") is True
    assert value(observed, "mptcp_at_end") == {"client": True, "server": True}
    assert (value(observed, "data_c2s"), value(observed, "data_s2c")) == ("intact", "intact")
    assert "client.MPCapableSYNACKRX+1" in observed["mptcp_negotiated"].evidence
    assert "middlebox_triggered" not in observed


def test_option_stripped_from_syn_is_a_handshake_fallback_with_its_counters():
    observed, decided = recorded("strip-mpc-syn-nop")
    assert decided["verdict"] == "as-expected"
    assert value(observed, "fallback_at_handshake") is True
    assert "client.MPCapableFallbackSYNACK+1" in observed["fallback_at_handshake"].evidence
    assert value(observed, "mptcp_at_end") == {"client": False, "server": False}
    assert value(observed, "middlebox_triggered") is True


def test_dss_stripped_on_a_join_path_resets_that_subflow_with_reason_6():
    observed, decided = recorded("strip-dss-join-path")
    assert decided["verdict"] == "as-expected"
    assert "MIDDLEBOX_INTERFERENCE" in value(observed, "join_reset_reasons")
    assert "frame" in observed["join_reset_reasons"].evidence


def test_a_join_sent_to_another_backend_is_refused_by_token():
    observed, decided = recorded("lb-split")
    assert decided["verdict"] == "as-expected"
    assert value(observed, "join_no_token") >= 1
    assert value(observed, "join_reset_reasons") == ["MPTCP_SPECIFIC"]


def test_a_stalled_run_deviates_and_says_why():
    observed, decided = recorded("payload-flip-c2s-csum")
    assert decided["verdict"] == "deviates"
    assert value(observed, "stalled") is True
    assert value(observed, "mp_fail_sent") >= 1 and value(observed, "checksum_errors") >= 1
    assert value(observed, "data_c2s") == "lost"
    assert any(w.startswith("stalled is true, expected false") for w in decided["why"])


def test_a_middlebox_that_never_triggered_is_inconclusive_not_a_pass():
    observed, decided = recorded("strip-mp-prio-never")
    assert value(observed, "middlebox_triggered") is False
    assert decided["verdict"] == "inconclusive"
    assert decided["why"] == ["the middlebox never changed a packet"]


def test_a_passive_middlebox_is_triggered_by_seeing_packets():
    observed, decided = recorded("pass")
    assert value(observed, "middlebox_triggered") is True
    assert "packets seen" in observed["middlebox_triggered"].evidence
    assert decided["verdict"] == "as-expected"


def test_a_crashed_middlebox_is_an_error_a_failed_connect_deviates_missing_evidence_inconclusive():
    why = "middlebox pass in slot crashed: exit -9"
    crashed = {
        "connect": {"ok": False, "error": "timeout"},
        "middleboxes": {"slot": {"behaviour": "pass", "crashed": why}},
    }
    unaffected = expect.EXPECTATIONS["mptcp-unaffected"]
    decided = decide(unaffected, facts.observe(Evidence(crashed, [])), True)
    assert (decided["verdict"], decided["why"]) == ("error", [why])
    no_connection = facts.observe(Evidence({"connect": {"ok": False, "error": "refused"}}, []))
    decided = decide(unaffected, no_connection, False)  # (a check that always holds failed)
    assert decided == {
        "verdict": "deviates",
        "why": ["connected is false, expected true (connect: refused)"],
        "outcome": None,
    }
    no_transfer = facts.observe(Evidence({"connect": {"ok": True}, "counters": {}}, []))
    decided = decide(unaffected, no_transfer, False)
    assert decided["verdict"] == "inconclusive" and "no evidence for data_c2s" in decided["why"]


def test_bad_scenarios_are_one_sentence():
    with pytest.raises(ScenarioError, match="unknown expectation 'magic'"):
        Scenario(name="x", expect="magic")
    with pytest.raises(ScenarioError, match="unknown key 'colour'"):
        from_dict({"name": "x", "colour": "red"})
