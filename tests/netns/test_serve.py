"""mbtest serve on the testbed's server: for behaviours that change packets in either
direction, the probe reports the change in the right direction with the field the
middlebox's log names, placed against the routers' quotes (at the hop that first quoted it,
after the last router that quoted it, or on the way back where ICMP shows nothing), also
when every router is silent; the control channel works over a management link that
bypasses the slot, and across a payload-changing middlebox it is found tampered with and no
record is reported."""

import contextlib
import json
import os
import select
import signal
import subprocess
import sys
import time

import pytest

from mbtest.host import links, netns
from mbtest.probe.groundtruth import truth_field
from mbtest.probe.run import ProbeOptions, run
from mbtest.testbed import builder, topology
from tests.netns.test_probe import CASES

PORT, CONTROL = 8080, 8765
SECRET = b"a testbed secret of 32 bytes ..."
MGMT_CLIENT, MGMT_SERVER = "192.168.251.1", "192.168.251.2"


@pytest.fixture(scope="module")
def root():
    if os.geteuid() != 0:
        pytest.skip("namespace tests need root")


@contextlib.contextmanager
def served(
    spec: str | None,
    version: int = 4,
    management: bool = True,
    silent: bool = False,
    log_dir: str | None = None,
    **params,
):
    """long-path with SPEC in its slot, mbtest serve on the server and, when asked, a
    management link from the client straight to the server (bypassing the slot)."""
    topo = topology.load("long-path", params)
    slot = topo.slots[0].name
    boxes = {slot: spec} if spec else {}
    with builder.Testbed(topo, ip_version=version, middleboxes=boxes, log_dir=log_dir) as bed:
        if management:
            links.veth(bed.client_ns, "mgmt0", bed.server_ns, "mgmt1")
            links.address(bed.client_ns, "mgmt0", MGMT_CLIENT + "/30")
            links.address(bed.server_ns, "mgmt1", MGMT_SERVER + "/30")
        if silent:  # every router keeps its ICMP errors to itself
            for node in topo.nodes.values():
                if node.forwards:
                    drop = ["iptables", "-A", "OUTPUT", "-p", "icmp", "-j", "DROP"]
                    netns.call_in(bed.ns(node.name), subprocess.run, drop, check=True)
        argv = [sys.executable, "-m", "mbtest.cli", "serve", "--port", str(PORT),
                "--control-port", str(CONTROL), "--from", "server",
                "--testbed", bed.run_id]  # fmt: skip
        env = dict(os.environ, MBTEST_SERVE_SECRET=SECRET.decode())
        server = subprocess.Popen(argv, stderr=subprocess.PIPE, text=True, env=env)
        try:
            ready, _, _ = select.select([server.stderr], [], [], 20)
            assert ready and "serving MPTCP" in server.stderr.readline()
            yield bed, topo
        finally:
            server.send_signal(signal.SIGTERM)
            assert server.wait(10) == 143  # stopped by SIGTERM, as the exit scheme says
            server.stderr.close()


def probe(bed, topo, version: int, control: str, *names: str) -> dict:
    target = topo.addresses("server", version)[0]
    options = ProbeOptions(
        port=PORT, probes=names, resolve_names=False, timeout=1.0,
        server=(control, CONTROL), secret=SECRET,
    )  # fmt: skip
    return netns.call_in(bed.client_ns, run, target, options, timeout=120)


def logged_fields(bed) -> set[tuple[str, str]]:
    """(field, direction) of every change the middlebox's own log says it made."""
    fields = set()
    for process in bed.processes.values():
        with open(process.log_path) as f:
            for line in f:
                entry = json.loads(line)
                fields.add((entry.get("field", "").split(" ")[0], entry.get("direction")))
    return fields


@pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
def test_a_change_on_the_way_there_is_placed_at_the_hop_that_quotes_it_first(root, version):
    spec = "mangle-option:field=MP_CAPABLE.checksum_required,value=true,direction=c2s"
    with served(spec, version) as (bed, topo):
        result = probe(bed, topo, version, MGMT_SERVER, "mp_capable")["probes"][0]
        fields = logged_fields(bed)
    server = result["server"]
    assert server["arrived"] and server["ttl"] == 10
    assert [c["field"] for c in server["forward"]] == ["MP_CAPABLE.checksum_required"]
    assert ("MP_CAPABLE.checksum_required", "c>s") in fields
    assert server["forward"][0]["where"] == "at hop 5 (first quoted there)"
    assert result["first_change"]["ttl"] == 5  # the quotes agree
    assert server["back"]["changes"] == []


@pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
def test_a_change_on_the_way_back_that_icmp_cannot_show_is_reported(root, version):
    with served("strip-option:segments=synack", version) as (bed, topo):
        result = probe(bed, topo, version, MGMT_SERVER, "mp_capable")["probes"][0]
        fields = logged_fields(bed)
    assert result["first_change"] is None  # nothing on the way there: the quotes are clean
    server = result["server"]
    assert server["forward"] == []
    back = server["back"]
    assert back["server_sent"] == "SA"
    assert [c["text"] for c in back["changes"]] == ["MP_CAPABLE removed: replaced by 12 NOPs"]
    assert back["changes"][0]["field"] == "tcp.options" and ("tcp.options", "s>c") in fields


def test_a_change_after_the_last_router_is_placed_between_it_and_the_server(root):
    spec = "mangle-option:field=MP_CAPABLE.checksum_required,value=true,direction=c2s"
    with served(spec, slot_at=9) as (bed, topo):
        result = probe(bed, topo, 4, MGMT_SERVER, "mp_capable")["probes"][0]
    assert result["first_change"] is None  # no router after the slot to quote it
    (change,) = result["server"]["forward"]
    assert change["field"] == "MP_CAPABLE.checksum_required"
    assert change["where"] == "between hop 9 (the last router that quoted it) and the server"


def test_with_every_router_silent_the_server_still_sees_the_change(root):
    spec = "mangle-option:field=MP_CAPABLE.checksum_required,value=true,direction=c2s"
    with served(spec, silent=True) as (bed, topo):
        result = probe(bed, topo, 4, MGMT_SERVER, "mp_capable")["probes"][0]
    assert all(h["silent"] for h in result["hops"]) and result["first_change"] is None
    (change,) = result["server"]["forward"]
    assert change["field"] == "MP_CAPABLE.checksum_required"
    assert change["where"] == "between the probe and the server (no router quoted this field)"


def test_a_control_channel_across_a_payload_changing_middlebox_is_found_tampered(root):
    with served("payload-flip", management=False) as (bed, topo):
        server_address = topo.addresses("server", 4)[0]
        started = time.monotonic()
        doc = probe(bed, topo, 4, server_address, "mp_capable", "plain_syn")
        assert time.monotonic() - started < 30
    for result in doc["probes"]:
        server = result["server"]
        assert server["tampered"] and "integrity check" in server["error"]
        assert "forward" not in server and "back" not in server  # no record reported
        assert result["destination"]["reached"]  # the ICMP sweep itself still ran


def test_every_behaviour_that_changes_packets_is_seen_in_its_direction(root, tmp_path):
    """Each catalog behaviour the path probes cover (and a NAT, which ICMP cannot show):
    every field the middlebox logged on the way to the server is among the server's
    forward changes; on a SYN probe, every field it logged on the SYN/ACK is among the
    changes on the way back."""
    missed = []
    with served(None, log_dir=str(tmp_path)) as (bed, topo):
        slot = topo.slots[0].name
        for spec, probe_name in [*CASES, ("nat", "mp_capable")]:
            spec = spec.replace("ADDRESS", "10.9.9.9")
            bed.replace_middlebox(slot, spec)
            try:
                result = probe(bed, topo, 4, MGMT_SERVER, probe_name)["probes"][0]
            finally:
                bed.replace_middlebox(slot, None)
            log = tmp_path / f"middlebox-{slot}.jsonl"
            entries = [json.loads(line) for line in log.read_text().splitlines()]
            log.unlink()
            server = result["server"]
            assert server.get("arrived"), (spec, server)
            forward = {c["field"] for c in server["forward"]}
            there = {  # (not the RST that closes the probe's connection afterwards)
                truth_field(e["field"])
                for e in entries
                if e["direction"] == "c>s" and not e.get("flags", 0) & 4
            }
            assert there, f"{spec} changed nothing on the way to the server"
            for field in there:
                if not any(f == field or f.startswith(field + ".") for f in forward):
                    missed.append((spec, "forward", field, sorted(forward)))
            if probe_name in ("mp_capable", "mp_capable_v0", "mp_join", "plain_syn"):
                back = {c["field"] for c in server["back"].get("changes", [])}
                synack = {
                    truth_field(e["field"])
                    for e in entries
                    if e["direction"] == "s>c" and "synack" in e.get("segment", [])
                }
                for field in synack:
                    if not any(f == field or f.startswith(field + ".") for f in back):
                        missed.append((spec, "back", field, sorted(back)))
    assert not missed, missed


@pytest.mark.parametrize("version", [4, 6], ids=["ipv4", "ipv6"])
def test_options_sent_back_by_the_server_show_a_change_only_that_direction_makes(root, version):
    address = "10.9.9.9" if version == 4 else "fd00:9::9"
    spec = f"mangle-option:field=ADD_ADDR.address,value={address},direction=s2c"
    with served(spec, version) as (bed, topo):
        result = probe(bed, topo, version, MGMT_SERVER, "add_addr")["probes"][0]
    server = result["server"]
    assert result["first_change"] is None and server["forward"] == []  # untouched that way
    crafted = server["crafted"]
    assert crafted["sent"].startswith("A [ADD_ADDR") and crafted["arrived"]
    assert [c["field"] for c in crafted["changes"]] == ["ADD_ADDR.address"]
    assert crafted["changes"][0]["after"] == address
