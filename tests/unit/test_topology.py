"""Topology files: the shipped ones load; every inconsistency is one clear sentence."""

import copy

import pytest

from mbtest.testbed import topology
from mbtest.testbed.topology import TopologyError, parse

SHIPPED = [
    "single-path",
    "dual-path",
    "dual-homed-server",
    "long-path",
    "direct-two-path",
    "load-balanced",
]


@pytest.mark.parametrize("name", SHIPPED)
def test_shipped_topologies_load_and_connect_client_to_server(name):
    topo = topology.load(name)
    assert topo.hops_to(topo.client.name, topo.server.name)
    for slot in topo.slots:
        assert topo.slot_on_path(slot.name)
    for version in (4, 6):
        assert topo.addresses(topo.client.name, version) and topo.addresses(
            topo.server.name, version
        )


def test_single_path_has_routers_on_both_sides_of_its_slot():
    topo = topology.load("single-path")
    assert topo.hops_to("client", "server") == ["client", "r1", "slot", "r2", "server"]


def test_dual_path_has_two_disjoint_slots_and_dual_homed_server_announces_through_a_slot():
    dual = topology.load("dual-path")
    assert {s.name for s in dual.slots} == {"slota", "slotb"}
    assert len(dual.interfaces("client")) == 2 and len(dual.interfaces("server")) == 1
    dhs = topology.load("dual-homed-server")
    signal = [e for e in dhs.server.endpoints if "signal" in e.flags]
    assert {e.address for e in signal} == {"10.3.6.2", "fd00:3:6::2"}
    assert "slot2" in dhs.hops_to("client", "slot2")


def test_long_path_has_at_least_eight_routers_and_a_movable_slot():
    topo = topology.load("long-path")
    assert len(topo.hops_to("client", "server")) - 2 >= 8
    assert topo.hops_to("client", "server")[4] == "slot4"
    moved = topology.load("long-path", {"slot_at": 7, "routers": 12})
    path = moved.hops_to("client", "server")
    assert path[7] == "slot7" and len(path) == 14


def base():
    return {
        "name": "t",
        "nodes": [
            {"name": "client", "role": "client", "routes": [{"to": "default", "via": "10.0.0.2"}]},
            {"name": "mb", "role": "slot"},
            {"name": "server", "role": "server", "routes": [{"to": "default", "via": "10.0.1.1"}]},
        ],
        "links": [
            {
                "a": {"node": "client", "ifname": "eth0", "addresses": ["10.0.0.1/24"]},
                "b": {"node": "mb", "ifname": "eth0", "addresses": ["10.0.0.2/24"]},
            },
            {
                "a": {"node": "mb", "ifname": "eth1", "addresses": ["10.0.1.1/24"]},
                "b": {"node": "server", "ifname": "eth0", "addresses": ["10.0.1.2/24"]},
            },
        ],
    }


def mutate(fn):
    data = copy.deepcopy(base())
    fn(data)
    return data


def test_the_minimal_topology_is_valid():
    assert parse(base()).slots[0].name == "mb"


@pytest.mark.parametrize(
    "change,message",
    [
        (lambda d: d["links"][0]["a"].update(node="ghost"), "link 1 names unknown node 'ghost'"),
        (
            lambda d: d["links"][1]["b"].update(addresses=["10.0.0.1/24"]),
            "address 10.0.0.1 is on both client and server",
        ),
        (
            lambda d: d["links"][0]["a"].update(addresses=["10.0.0.300/24"]),
            "'10.0.0.300/24' is not an address with a prefix length",
        ),
        (
            lambda d: d["links"][0]["a"].update(addresses=["10.0.0.1"]),
            "is not an address with a prefix length",
        ),
        (
            lambda d: d["links"][0]["b"].update(addresses=["10.0.9.2/24"]),
            "the ends of link 1 are in different IPv4 subnets",
        ),
        (
            lambda d: (
                d["nodes"].append({"name": "mb2", "role": "slot"})
                or d["links"].append(
                    {
                        "a": {"node": "mb2", "ifname": "eth0", "addresses": []},
                        "b": {"node": "client", "ifname": "eth1", "addresses": []},
                    }
                )
            ),
            "middlebox slot mb2 is not on a path between client and server",
        ),
        (
            lambda d: d["nodes"].append({"name": "client", "role": "router"}),
            "node 'client' is defined twice",
        ),
        (lambda d: d["nodes"].pop(0), "needs exactly one client node, found 0"),
        (
            lambda d: d["nodes"][1].update(role="firewall"),
            "role must be one of client, server, router, slot",
        ),
        (lambda d: d["nodes"][0].update(colour="red"), "unknown key 'colour'"),
        (
            lambda d: d["nodes"][0]["routes"].append({"to": "default", "via": "10.9.9.9"}),
            "routes via 10.9.9.9, which is not on any of its links",
        ),
        (
            lambda d: d["nodes"][0].update(rules=[{"from": "10.0.0.1/32", "table": 7}]),
            "rule to table 7, which has no route",
        ),
        (
            lambda d: d["nodes"][0].update(
                endpoints=[{"address": "10.0.0.1", "flags": ["sometimes"]}]
            ),
            "flag 'sometimes' is not one of",
        ),
        (
            lambda d: d["nodes"][0].update(endpoints=[{"address": "10.0.5.1"}]),
            "endpoint on 10.0.5.1, not one of its addresses",
        ),
        (
            lambda d: d["nodes"][1].update(endpoints=[{"address": "10.0.0.2"}]),
            "only the client and the server have MPTCP endpoints",
        ),
        (
            lambda d: d["nodes"][0].update(limits={"subflows": 99}),
            "limit subflows must be an integer from 0 to 8",
        ),
        (lambda d: d["nodes"][0].update(sysctls={"kernel.panic": 1}), "is not a net.* sysctl"),
        (
            lambda d: d["nodes"][0].update(name="Client!"),
            "must be 1-10 lowercase letters or digits",
        ),
        (lambda d: d["links"][0]["a"].update(ifname="averyveryverylongname"), "interface name"),
        (lambda d: d["links"][0]["b"].update(node="client"), "link 1 connects client to itself"),
        (lambda d: d["links"].pop(1), "node server has no link"),
    ],
)
def test_inconsistent_topologies_get_one_clear_sentence(change, message):
    with pytest.raises(TopologyError) as info:
        parse(mutate(change), source="t.toml")
    assert message in str(info.value)
    assert str(info.value).startswith("t.toml: ")
    assert "\n" not in str(info.value)


def test_malformed_toml_and_unknown_names_and_parameters(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("name = 'x\n[[nodes]\n")
    with pytest.raises(TopologyError, match=r"bad\.toml is not valid TOML"):
        topology.load(str(bad))
    with pytest.raises(TopologyError, match=r"unknown topology 'nowhere' \(known: "):
        topology.load("nowhere")
    with pytest.raises(TopologyError, match="does not exist"):
        topology.load(str(tmp_path / "missing.toml"))
    with pytest.raises(TopologyError, match="unknown parameter 'hops'"):
        topology.load("long-path", {"hops": 3})
    with pytest.raises(TopologyError, match="slot_at must be a hop between 1 and 9, not 12"):
        topology.load("long-path", {"slot_at": 12})
