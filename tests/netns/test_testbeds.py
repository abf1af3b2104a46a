"""Testbeds on the real kernel: each topology gives the MPTCP behaviour it is built for."""

import pytest

from mbtest.experiment.run import RunConfig, run_traffic
from mbtest.host import netns
from mbtest.testbed import builder, topology

FALLBACK = {
    "MPCapableFallbackACK",
    "MPCapableFallbackSYNACK",
    "MPCapableDataFallback",
    "DssFallback",
}


def run(name, tmp_path, ip_version, **config):
    topo = topology.load(name)
    with builder.Testbed(topo, ip_version=ip_version) as bed:
        assert all(netns.exists(ns) for ns in bed.namespaces.values())
        names = list(bed.namespaces.values())
        doc = run_traffic(bed, RunConfig(ip_version=ip_version, **config), str(tmp_path))
    assert names and not any(netns.exists(ns) for ns in names)
    assert doc["connect"]["ok"] and doc["preamble"]["ok"]
    assert doc["transfer"]["stalled"] is False
    assert [s["intact"] for s in doc["transfer"]["streams"]] == [True, True]
    for name_, capture in doc["captures"].items():
        assert capture["dropped by kernel"] == 0, name_
    return doc


@pytest.mark.parametrize("ip_version", [4, 6])
def test_single_path_is_mptcp_without_fallback(tmp_path, ip_version):
    doc = run("single-path", tmp_path, ip_version)
    client, server = doc["counters"]["client"], doc["counters"]["server"]
    assert client["MPCapableSYNTX"] == 1 and client["MPCapableSYNACKRX"] == 1
    assert server["MPCapableSYNRX"] == 1 and server["MPCapableACKRX"] == 1
    assert not FALLBACK & (set(client) | set(server))
    assert doc["sockets"]["client"]["mptcp"] and doc["sockets"]["server"]["mptcp"]
    assert len(doc["sockets"]["client"]["subflows"]) == 1
    # The slot saw the connection on both sides, MPTCP options intact.
    for pcap in ("slot-eth0.pcap", "slot-eth1.pcap", "client.pcap", "server.pcap"):
        subflows = doc["timelines"][pcap]["subflows"]
        assert [s["kind"] for s in subflows] == ["initial"], pcap
        assert subflows[0]["plain_after_mptcp"] == {"c>s": 0, "s>c": 0}


@pytest.mark.parametrize("ip_version", [4, 6])
def test_dual_path_opens_two_subflows(tmp_path, ip_version):
    doc = run("dual-path", tmp_path, ip_version)
    client, server = doc["counters"]["client"], doc["counters"]["server"]
    assert client["MPJoinSynTx"] == 1 and client["MPJoinSynAckRx"] == 1
    assert server["MPJoinSynRx"] == 1 and server["MPJoinAckRx"] == 1
    subflows = doc["sockets"]["client"]["subflows"]
    local = {s["local"].rsplit(":", 1)[0].strip("[]") for s in subflows}
    expected = {"10.2.1.1", "10.2.5.1"} if ip_version == 4 else {"fd00:2:1::1", "fd00:2:5::1"}
    assert local == expected
    # each slot carries exactly one of the two subflows
    assert [s["kind"] for s in doc["timelines"]["slota-eth0.pcap"]["subflows"]] == ["initial"]
    assert [s["kind"] for s in doc["timelines"]["slotb-eth0.pcap"]["subflows"]] == ["join"]


@pytest.mark.parametrize("ip_version", [4, 6])
def test_dual_homed_server_announces_and_is_joined(tmp_path, ip_version):
    doc = run("dual-homed-server", tmp_path, ip_version)
    client, server = doc["counters"]["client"], doc["counters"]["server"]
    assert server["AddAddrTx"] >= 1 and client["AddAddr"] >= 1
    assert client["EchoAddTx"] >= 1 and server["EchoAdd"] >= 1
    assert client["MPJoinSynTx"] == 1 and server["MPJoinAckRx"] == 1
    announced = "10.3.6.2" if ip_version == 4 else "fd00:3:6::2"
    remotes = {
        s["remote"].rsplit(":", 1)[0].strip("[]") for s in doc["sockets"]["client"]["subflows"]
    }
    assert announced in remotes
    assert [s["kind"] for s in doc["timelines"]["slot2-eth0.pcap"]["subflows"]] == ["join"]
    # the announcement leaves before the first data, so it is the server's first packet
    # after the handshake: the cells that strip it there do not depend on a race
    assert doc["announced"]["before_data"]
    from mbtest.observe.decode import decode_capture

    server_side = [r for r in decode_capture(tmp_path / "server.pcap") if r.direction == "s>c"]
    first_after_handshake = server_side[1]  # (the first is the SYN/ACK)
    assert [o.name for o in first_after_handshake.options] == ["AddAddr"]


@pytest.mark.parametrize("ip_version", [4, 6])
def test_long_path_carries_mptcp_across_nine_routers(tmp_path, ip_version):
    doc = run("long-path", tmp_path, ip_version, c2s_bytes=200_000, s2c_bytes=200_000)
    assert doc["counters"]["server"]["MPCapableACKRX"] == 1
    assert [s["kind"] for s in doc["timelines"]["slot4-eth0.pcap"]["subflows"]] == ["initial"]


def test_fallback_evidence_when_the_slot_strips_option_30(tmp_path):
    """A real netfilter option stripper in the slot: the evidence must show the fallback."""
    import subprocess

    topo = topology.load("single-path")
    with builder.Testbed(topo) as bed:
        strip = [
            "iptables",
            "-t",
            "mangle",
            "-A",
            "FORWARD",
            "-p",
            "tcp",
            "--tcp-flags",
            "SYN",
            "SYN",
            "-j",
            "TCPOPTSTRIP",
            "--strip-options",
            "30",
        ]
        proc = netns.popen(bed.ns("slot"), strip, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 0, err
        doc = run_traffic(bed, RunConfig(c2s_bytes=100_000, s2c_bytes=100_000), str(tmp_path))
    assert [s["intact"] for s in doc["transfer"]["streams"]] == [True, True]
    assert doc["sockets"]["client"]["mptcp"] is False and doc["sockets"]["server"]["mptcp"] is False
    assert doc["sockets"]["client"]["tcp"]["state"] == "ESTABLISHED"
    assert doc["counters"]["client"]["MPCapableSYNTX"] == 1
    assert doc["counters"]["client"].get("MPCapableSYNACKRX", 0) == 0
    assert doc["counters"]["server"].get("MPCapableSYNRX", 0) == 0
    before, after = (
        doc["timelines"][p]["subflows"][0] for p in ("slot-eth0.pcap", "slot-eth1.pcap")
    )
    assert before["kind"] == "mp_capable-attempt" and before["events"][0]["options"] == [
        "MpCapable"
    ]
    assert after["kind"] == "tcp" and after["mptcp_packets"] == 0


def test_a_middlebox_named_in_the_topology_file_runs_and_the_command_line_overrides_it(tmp_path):
    text = topology.TOPOLOGY_DIR.joinpath("single-path.toml").read_text()
    text = text.replace(
        'role = "slot"', 'role = "slot"\nmiddlebox = "strip-option:segments=syn"', 1
    )
    path = tmp_path / "with-box.toml"
    path.write_text(text)
    topo = topology.load(str(path))
    assert topo.nodes["slot"].middlebox == "strip-option:segments=syn"
    for placed, fell_back in (({}, True), ({"slot": "pass"}, False)):
        out = tmp_path / ("file" if not placed else "override")
        with builder.Testbed(topo, middleboxes=placed, log_dir=str(out)) as bed:
            doc = run_traffic(bed, RunConfig(c2s_bytes=20_000, s2c_bytes=20_000), str(out))
        box = doc["middleboxes"]["slot"]
        assert box["name"] == ("pass" if placed else "strip-option")
        assert bool(doc["counters"]["client"].get("MPCapableFallbackSYNACK")) is fell_back


def test_a_namespace_is_new_and_goes_without_a_trace():
    """Made from a thread (as ip netns add does), never from a forked process."""
    import os

    name = f"{netns.PREFIX}{os.getpid()}-nstest"
    netns.create(name)
    try:
        path = os.path.join(netns.NETNS_DIR, name)
        assert os.stat(path).st_ino != os.stat("/proc/self/ns/net").st_ino
        inside = netns.call_in(name, lambda: os.stat("/proc/thread-self/ns/net").st_ino)
        assert inside == os.stat(path).st_ino
        assert os.stat("/proc/self/ns/net").st_ino != inside  # this process stayed put
    finally:
        netns.remove(name)
    assert not netns.exists(name)
    with open("/proc/self/mountinfo") as f:
        assert name not in f.read()
