"""Conformance probes against a real Linux server: each verdict agrees with what the server's
kernel counted (MPTcpExt), over IPv4 and IPv6; through a NAT and a sequence rewriter the
verdicts stay the same; through middleboxes that strip what a case needs the verdict says
the path is in the way (inconclusive, or the setup failure naming the path) instead of
blaming the target; ``topo up --listen`` gives a user the same target by hand."""

import contextlib
import json
import os
import subprocess
import sys

import pytest

from mbtest.endpoints import listener
from mbtest.host import netns
from mbtest.observe import counters
from mbtest.probe import loader
from mbtest.probe.run import ProbeOptions, run
from mbtest.testbed import builder, topology

PORT = 8080

# Linux 6.x as the server: (outcome, verdict, counters that move by exactly this much,
# counters that must not move). The probe's own closing MP_FASTCLOSE counts once wherever
# its connection is still open at the end.
KERNEL = {
    "conf_add_addr_bad_hmac": (  # only the valid announcement is counted and echoed
        "ignored", "as-expected", {"AddAddr": 1, "EchoAddTx": 1}, ("AddAddrDrop",)
    ),
    "conf_csum_bad": (
        "mp-fail", "as-expected", {"DataCsumErr": 1, "MPFailTx": 1}, ("DssFallback",)
    ),
    "conf_csum_bad_first": (  # Linux falls back silently: no MP_FAIL before a valid checksum
        "fallback", "deviates", {"DataCsumErr": 1, "DssFallback": 1}, ("MPFailTx",)
    ),
    "conf_data_no_dss": ("fallback", "permitted-variant", {"DssFallback": 1}, ("MPRstTx",)),
    "conf_data_outside_mapping": (
        "fallback", "permitted-variant", {"DSSCorruptionFallback": 1}, ("MPRstTx",)
    ),
    "conf_fastclose": ("reset", "as-expected", {"MPFastcloseRx": 1, "MPRstTx": 1}, ()),
    "conf_fastclose_wrong_key": (  # the one MP_FASTCLOSE counted, and its RST: the control's
        "ignored", "as-expected", {"MPFastcloseRx": 1, "MPRstTx": 1}, ()
    ),
    "conf_first_data_dss": (
        "fallback", "as-expected", {"MPCapableFallbackACK": 1}, ("MPCapableACKRX",)
    ),
    "conf_infinite_mapping": ("fallback", "as-expected", {"InfiniteMapRx": 1}, ("MPRstTx",)),
    "conf_join_bad_hmac": ("reset", "as-expected", {"MPJoinAckHMacFailure": 1}, ()),
    "conf_join_unknown_token": ("reset", "as-expected", {"MPJoinNoTokenFound": 1}, ()),
    "conf_third_ack_plain": (
        "fallback", "as-expected", {"MPCapableFallbackACK": 1}, ("MPCapableACKRX",)
    ),
}  # fmt: skip
SUITE = loader.suite("conformance")
# the cases whose control needs MPTCP data signalling to cross the path both ways
CONTROLLED = {
    "conf_csum_bad",
    "conf_csum_bad_first",
    "conf_data_outside_mapping",
    "conf_fastclose_wrong_key",
    "conf_infinite_mapping",
}


@pytest.fixture(scope="module")
def root():
    if os.geteuid() != 0:
        pytest.skip("namespace tests need root")


@contextlib.contextmanager
def served(version: int, middleboxes: dict | None = None):
    """single-path with the listener on its server (ended with the testbed, then reaped)."""
    server = None
    try:
        topo = topology.load("single-path")
        with builder.Testbed(topo, ip_version=version, middleboxes=middleboxes or {}) as bed:
            server = listener.start(bed.server_ns, PORT)
            yield bed
    finally:
        if server is not None:
            server.wait(5)


def probe(bed, version: int, *names: str) -> dict:
    target = bed.topology.addresses("server", version)[0]
    options = ProbeOptions(port=PORT, probes=names, resolve_names=False, timeout=1.0)
    return netns.call_in(bed.client_ns, run, target, options, timeout=120)


def judged(doc: dict) -> dict[str, tuple[str, str]]:
    return {
        p["name"]: (p["conformance"]["outcome"], p["conformance"]["verdict"]) for p in doc["probes"]
    }


@pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
def test_every_verdict_agrees_with_the_servers_kernel_counters(root, version):
    assert set(SUITE) == set(KERNEL)
    with served(version) as bed:
        for name in SUITE:
            outcome, verdict, moved, still = KERNEL[name]
            before = counters.read(bed.server_ns)
            doc = probe(bed, version, name)
            delta = counters.delta(before, counters.read(bed.server_ns))
            result = doc["probes"][0]
            assert "error" not in result, result.get("error")
            said = (result["conformance"]["outcome"], result["conformance"]["verdict"])
            assert said == (outcome, verdict), (name, result["conformance"]["why"], delta)
            for counter, count in moved.items():
                assert delta.get(counter, 0) == count, (name, counter, delta)
            for counter in still:
                assert counter not in delta, (name, counter, delta)
            exchange = result["conformance"]["exchange"]
            assert exchange[0]["direction"] == "sent"
            assert any(step["direction"] == "answer" for step in exchange)


@pytest.mark.parametrize("spec", ["nat", "seq-rewrite"])
def test_a_nat_or_a_sequence_rewriter_changes_no_verdict(root, spec):
    with served(4, {"slot": spec}) as bed:
        doc = probe(bed, 4, *SUITE)
    assert judged(doc) == {name: KERNEL[name][:2] for name in SUITE}


def test_a_path_stripping_dss_makes_the_cases_that_need_it_inconclusive(root):
    with served(4, {"slot": "strip-option:subtypes=DSS,segments=data"}) as bed:
        doc = probe(bed, 4, *SUITE)
    for name, (outcome, verdict) in judged(doc).items():
        if name in CONTROLLED:  # never "deviates": the target is not to blame
            assert (outcome, verdict) == ("inconclusive", "inconclusive"), name
        elif name != "conf_data_no_dss":  # (no DSS is what that case sends anyway)
            assert (outcome, verdict) == KERNEL[name][:2], name


def test_a_path_stripping_mp_capable_is_named_as_the_reason_nothing_was_judged(root):
    with served(4, {"slot": "strip-option"}) as bed:
        doc = probe(bed, 4, "conf_csum_bad", "conf_fastclose")
    for result in doc["probes"]:  # the target answered: the path is in the way, not it
        assert result["conformance"]["verdict"] == "inconclusive"
        assert "carries no MP_CAPABLE: the path strips it" in result["error"]


def test_topo_up_listen_gives_a_target_for_the_suite_by_hand(root, tmp_path):
    cli = [sys.executable, "-m", "mbtest.cli"]
    up = subprocess.run(
        [*cli, "topo", "up", "single-path", "--listen", str(PORT), "--json"],
        capture_output=True, text=True, timeout=60, cwd=tmp_path,
    )  # fmt: skip
    assert up.returncode == 0, up.stderr
    bed = json.loads(up.stdout)
    try:
        assert bed["listening"] == {"node": "server", "port": PORT}
        target = bed["nodes"]["server"]["addresses"][0]
        done = subprocess.run(
            [*cli, "probe", target, "-p", str(PORT), "--from", "client", "--testbed",
             bed["testbed"], "--probe", "conf_fastclose", "-n", "--json"],
            capture_output=True, text=True, timeout=60, cwd=tmp_path,
        )  # fmt: skip
        assert done.returncode == 0, done.stderr  # as-expected: no finding
        result = json.loads(done.stdout)["probes"][0]
        assert result["conformance"]["verdict"] == "as-expected"
    finally:
        down = subprocess.run(
            [*cli, "topo", "down", bed["testbed"]], capture_output=True, text=True, timeout=60
        )
    assert down.returncode == 0, down.stderr
    server_ns = bed["nodes"]["server"]["namespace"]
    assert not netns.exists(server_ns)
