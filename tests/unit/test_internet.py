"""The emulated Internet's generator (same seed, same Internet; what each path holds is what
its ground truth says) and the judge that compares a campaign with that ground truth."""

import ipaddress
from collections import Counter

import pytest

from mbtest.errors import MbtestError
from mbtest.probe.groundtruth import judge
from mbtest.testbed import internet, topology


@pytest.fixture(scope="module")
def made():
    return topology.load("internet", {"targets": 150, "seed": 7})


def test_the_same_seed_gives_the_same_internet_and_another_seed_another():
    a, b = internet.expand({"targets": 30, "seed": 3}), internet.expand({"targets": 30, "seed": 3})
    assert a.truth == b.truth and a.nodes == b.nodes and a.links == b.links
    assert internet.expand({"targets": 30, "seed": 4}).truth != a.truth


def test_every_kind_of_path_is_there_and_the_truth_says_where(made):
    topo, truth = made, made.truth
    assert len(topo.targets) == 150 and len(truth["targets"]) == 150
    kinds = Counter(r["kind"] for r in truth["routers"].values())
    assert {"router", "quote8", "ratelimit", "silent"} <= set(kinds)
    listens = Counter(t["listen"] for t in truth["targets"])
    assert set(listens) == {"mptcp", "tcp", "silent", "closed"}
    assert sum(1 for t in truth["targets"] if t["ecmp_ttl"]) >= 10
    boxes = [t["middlebox"] for t in truth["targets"] if t["middlebox"]]
    assert len(boxes) >= 15 and len({b["spec"] for b in boxes}) >= 5
    assert len({t["distance"] for t in truth["targets"]}) == 4  # access paths of 1-4 routers
    for target in truth["targets"]:
        node = topo.nodes[target["name"]]
        assert node.role == "target" and node.listen == target["listen"]
        assert target["distance"] == len(target["path"]) + 1
        assert topo.hops_to("client", target["name"])[-1] == target["name"]
        box = target["middlebox"]
        if box:  # a router after it: its change can show
            assert box["ttl"] < target["distance"] - 1
            assert topo.nodes[box["node"]].middlebox == box["spec"]
        if target["ecmp_ttl"]:
            (pair,) = [h["nodes"] for h in target["path"] if h["ttl"] == target["ecmp_ttl"]]
            assert len(pair) == 2 and target["ecmp_ttl"] < target["distance"] - 1
    for name, router in truth["routers"].items():
        node = topo.nodes[name]
        assert (router["kind"] == "quote8") == (node.middlebox == internet.QUOTE_TRIM)
        assert router["silent"] == (not node.icmp_errors)
        limited = node.sysctls.get("net.ipv4.icmp_ratelimit")
        assert (router["ratelimit_ms"] is not None) == (limited is not None)
        for address in router["addresses"]:
            assert str(ipaddress.ip_address(address)) == address  # as results spell them


def test_an_ecmp_router_spreads_each_target_prefix_over_both_routers_by_flow(made):
    target = next(t for t in made.truth["targets"] if t["ecmp_ttl"])
    region = next(h["nodes"][0] for h in target["path"] if h["ttl"] == target["ecmp_ttl"] - 1)
    node = made.nodes[region]
    (route,) = [r for r in node.routes if r.to == target["prefix"]["4"]]
    assert len(route.also) == 1  # two gateways
    assert node.sysctls["net.ipv4.fib_multipath_hash_policy"] == "1"  # ports count (IPv6:
    # the default policy hashes the flow label)


@pytest.mark.parametrize(
    "table,says",
    [
        ({"targets": 0}, "targets must be an integer 1-1000"),
        ({"quote8": 101}, "quote8 must be an integer 0-100"),
        ({"colour": 1}, "unknown internet key 'colour'"),
        ({"no_mptcp": 60, "no_answer": 50}, "exceed 100 percent"),
    ],
)
def test_bad_parameters_are_one_sentence(table, says):
    with pytest.raises(MbtestError, match=says):
        internet.expand(table)


def test_a_bad_parameter_of_the_topology_file_is_one_sentence_too():
    with pytest.raises(MbtestError, match="internet targets must be an integer 1-1000"):
        topology.load("internet", {"targets": "0"})


# --- the judge ---------------------------------------------------------------------------------

PLAIN = {"silent": False, "ratelimit_ms": None, "quote_bytes": None}
TRUTH = {
    "routers": {
        "r1": {**PLAIN, "addresses": ["10.0.1.1"]},
        "r2": {**PLAIN, "addresses": ["10.0.2.1"]},
        "r3": {**PLAIN, "addresses": ["10.0.3.1"], "quote_bytes": 8},
    },
    "targets": [
        {
            "name": "t0",
            "address": {"4": "10.9.0.2"},
            "listen": "mptcp",
            "distance": 4,
            "path": [{"ttl": 1, "nodes": ["r1"]}, {"ttl": 2, "nodes": ["r2"]},
                     {"ttl": 3, "nodes": ["r3"]}],
            "middlebox": {"node": "r1", "ttl": 1, "spec": "strip-option"},
        }
    ],
}  # fmt: skip
SENT = {"src": "10.0.0.1:4000", "dst": "10.9.0.2:80", "flags": "S", "seq": 5,
        "options_hex": "1e0c01810000000000000001"}  # fmt: skip


def _hop(ttl, quote="full", changes=()):
    return {"ttl": ttl, "silent": False, "router": f"10.0.{ttl}.1", "quote": quote,
            "changes": list(changes)}  # fmt: skip


def _result(hops, outcome="changed", hidden=()):
    probe = {"name": "mp_capable", "sent": SENT, "hops": hops, "destination": {"reached": True},
             "observability": {"last_router_ttl": 3, "complete": not hidden,
                               "hidden": list(hidden)}}  # fmt: skip
    return {"campaign": {"target": "10.9.0.2", "outcome": outcome}, "probes": [probe]}


LOG = {"r1": [{"flow": "10.0.0.1:4000 > 10.9.0.2:80", "direction": "c>s", "flags": 2,
               "seq": 6, "field": "tcp.options (nop)"},
              {"flow": "10.0.0.1:4000 > 10.9.0.2:80", "direction": "c>s", "flags": 16,
               "seq": 6, "field": "tcp.window"},  # (not a swept segment: a SYN probe's)
              {"flow": "10.0.0.1:4001 > 10.9.0.2:80", "direction": "c>s", "flags": 2,
               "seq": 6, "field": "tcp.seq"}]}  # (another probe's flow)  # fmt: skip


def test_a_change_reported_at_the_right_hop_is_found_and_a_wrong_one_is_a_false_positive():
    change = {"field": "tcp.options", "first": True, "after_ttl": 1}
    right = _result([_hop(1), _hop(2, changes=[change]), _hop(3, "8 bytes")])
    j = judge(TRUTH, [right], LOG)
    assert (j.true_changes, j.observable, j.found, j.reported, j.correct) == (1, 1, 1, 1, 1)
    assert j.recall == j.precision == 1.0 and not j.hop_errors
    early = {"field": "tcp.options", "first": True, "after_ttl": 0}
    wrong = _result([_hop(1, changes=[early]), _hop(2), _hop(3, "8 bytes")])
    j = judge(TRUTH, [wrong], LOG)
    assert j.found == 0 and j.missed and j.false_positives and j.precision == 0.0


def test_a_change_no_quote_can_show_must_be_said_not_observable_and_never_clean():
    hidden = {"fields": "TCP options", "to_ttl": 1, "hidden": [2, 3], "text": "..."}
    silent = {"ttl": 2, "silent": True, "router": None, "changes": []}
    said = _result([_hop(1), silent, _hop(3, "8 bytes")], "not-observable", [hidden])
    j = judge(TRUTH, [said], LOG)
    assert (j.observable, j.unobservable, j.said_unobservable) == (0, 1, 1) and not j.unsaid
    clean = _result([_hop(1), silent, _hop(3, "8 bytes")], "clean", [hidden])
    assert judge(TRUTH, [clean], LOG).unsaid  # "clean" is a claim the quotes cannot back


def test_hops_unlike_the_truth_are_named():
    lying = _result([_hop(1), _hop(2, "8 bytes"), {**_hop(3), "router": "10.0.7.1"}], "clean")
    errors = judge(TRUTH, [lying], LOG).hop_errors
    assert any("hop 2: r2 quoted 8 bytes" in e for e in errors)
    assert any("hop 3: 10.0.7.1 is not r3" in e for e in errors)


def test_a_damaged_results_line_is_named_not_a_crash():
    damaged = _result([_hop(1)])
    damaged["probes"][0]["hops"] = [{"ttl": "x"}]
    fine = _result([_hop(1), _hop(2), _hop(3)], "clean")
    j = judge(TRUTH, [damaged, {"campaign": "?"}, fine], {})
    assert len(j.unreadable) == 2 and j.targets == 2
    assert "could not be judged" in j.summary()


def test_an_empty_wrong_or_incomplete_campaign_never_passes():
    assert judge(TRUTH, [], {}).missing == ["t0: no result"]  # (nothing is not 100 %)
    stranger = _result([_hop(1)])
    stranger["campaign"]["target"] = "10.9.9.9"
    assert judge(TRUTH, [stranger], {}).unknown
    failed = _result([_hop(1), _hop(2), _hop(3)], "error")
    failed["probes"][0]["error"] = "probe mp_capable failed: boom"
    j = judge(TRUTH, [failed], {})
    assert j.probe_errors and j.outcome_errors and j.shortfalls
    early = _result([_hop(1), _hop(2)], "clean")  # (the target said to answer at TTL 3)
    early["probes"][0]["destination"] = {"reached": True, "kind": "SYN/ACK", "ttl": 3}
    assert any("answered at TTL 3, it is at 4" in e for e in judge(TRUTH, [early], {}).hop_errors)


def test_a_damaged_ground_truth_is_one_sentence():
    from mbtest.probe.groundtruth import GroundTruthError

    with pytest.raises(GroundTruthError, match="the ground truth cannot be read"):
        judge({"targets": [{"name": "t0"}], "routers": {}}, [], {})
