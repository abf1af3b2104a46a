"""Probes on the long path: each behaviour that changes packets in flight is reported first at
the router right after the slot, on the field the middlebox's own log names; a clean path
shows no change; a silent router is a silent hop with the hops after it still found."""

import json
import os
import re
import socket
import struct
import subprocess
import sys
import time

import pytest

from mbtest.host import cleanup, netns, owners
from mbtest.probe import loader
from mbtest.probe.groundtruth import truth_field
from mbtest.probe.result import SCHEMA
from mbtest.probe.run import ProbeOptions, run
from mbtest.testbed import builder, topology

SLOT_AT, SILENT_AT, PORT = 4, 2, 80
IPPROTO_MPTCP = 262

# (behaviour spec, probe that sees it). Each changes the client's packets after the slot's
# own TTL check, so the first router to quote the change is hop SLOT_AT + 1.
CASES = [
    ("strip-option:mode=nop", "mp_capable"),
    ("strip-option:mode=remove", "mp_capable"),
    ("strip-option:mode=eol", "mp_capable"),
    ("kernel-optstrip", "mp_capable"),
    ("mangle-option:field=MP_CAPABLE.checksum_required,value=true", "mp_capable"),
    ("mangle-option:field=MP_CAPABLE.extensibility,value=true", "mp_capable"),
    ("mangle-option:field=MP_CAPABLE.hmac_sha256,value=false", "mp_capable"),
    ("mangle-option:field=MP_CAPABLE.version,value=1", "mp_capable_v0"),
    ("mangle-option:field=MP_JOIN.token,value=0x12345678", "mp_join"),
    ("mangle-option:field=ADD_ADDR.address,value=ADDRESS", "add_addr"),
    ("mangle-option:field=ADD_ADDR.port,value=4242", "add_addr"),
    ("mangle-option:field=DSS.dsn,value=7", "dss"),
    ("nat:quotes=keep", "mp_capable"),  # a NAT that leaves the quotes in ICMP errors alone
    ("nat:quotes=keep,ports=range", "mp_capable"),
    ("seq-rewrite", "mp_capable"),
    ("mss-clamp:value=1200", "mp_capable"),
    ("window-shrink", "dss"),
    ("ipid-rewrite", "mp_capable"),
    ("payload-flip", "dss"),
    ("payload-rewrite:find=DSS,replace=Data Sequence Signal", "dss"),
]


@pytest.fixture(scope="module", params=[4, 6], ids=["ipv4", "ipv6"])
def path(request, tmp_path_factory):
    version = request.param
    if os.geteuid() != 0:
        pytest.skip("namespace tests need root")
    topo = topology.load("long-path", {"slot_at": SLOT_AT, "silent_at": SILENT_AT})
    logs = tmp_path_factory.mktemp(f"logs{version}")
    with builder.Testbed(topo, ip_version=version, log_dir=str(logs)) as bed:
        family = socket.AF_INET if version == 4 else socket.AF_INET6

        def listen():
            sock = socket.socket(family, socket.SOCK_STREAM, IPPROTO_MPTCP)
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            sock.bind(("::" if version == 6 else "0.0.0.0", PORT))
            sock.listen(64)
            return sock

        listener = netns.call_in(bed.server_ns, listen)
        try:
            yield bed, topo.addresses("server", version)[0], version, logs
        finally:
            listener.close()


def probe(bed, target, *names, **options):
    options = ProbeOptions(port=PORT, probes=names, resolve_names=False, timeout=1.0, **options)
    return netns.call_in(bed.client_ns, run, target, options, timeout=120)


def test_clean_path_shows_no_change_and_a_silent_hop(path):
    bed, target, _version, _ = path
    doc = probe(
        bed, target, "plain_syn", "mp_capable", "mp_capable_v0", "mp_join", "dss", "add_addr"
    )
    assert doc["schema"] == SCHEMA
    routers = len(bed.topology.nodes) - 2
    for result in doc["probes"]:
        assert "error" not in result, result.get("error")
        hops = result["hops"]
        assert [h["ttl"] for h in hops] == list(range(1, routers + 1)), result["name"]
        assert [h["ttl"] for h in hops if h["silent"]] == [SILENT_AT]
        assert all(h["quote"] == "full" for h in hops if not h["silent"])
        assert result["first_change"] is None, (result["name"], result["first_change"])
        assert result["destination"]["reached"] and result["destination"]["ttl"] == routers + 1
        # the first round stops at the destination once the target answered (any probe's
        # packet): never short of it, never past max_ttl; later rounds ask the silent hop only
        first_round = result["packets_sent"] - (result["rounds"] - 1)
        assert routers + 1 <= first_round <= 30, (result["name"], first_round)
    assert doc["first_packet_seconds"] is not None
    answers = {r["name"]: r["destination"] for r in doc["probes"]}
    assert answers["plain_syn"]["kind"] == "SYN/ACK" and not answers["plain_syn"]["mptcp"]
    assert answers["mp_capable"]["mptcp"][0].startswith("MP_CAPABLE v1")
    assert "plain TCP" in answers["mp_capable_v0"]["text"]  # Linux speaks v1 only
    assert answers["mp_join"]["check"] == "its HMAC is valid"
    assert answers["dss"]["check"] == "the data is acknowledged at the MPTCP level"
    assert answers["add_addr"]["check"] == "the target echoed the address"


def hop_view(result: dict) -> dict:
    """What a reader takes from a probe: who answered at each TTL, what changed, the end."""
    return {
        "hops": [(h["ttl"], h["router"], h["silent"], h["changes"]) for h in result["hops"]],
        "first_change": result["first_change"],
        "destination": {  # (keys, data sequence numbers and ports are new each time)
            k: re.sub(r"\d{6,}|(?<=port )\d+", "N", json.dumps(result["destination"].get(k)))
            for k in ("ttl", "kind", "mptcp", "text", "check")
        },
    }


def test_the_probes_side_by_side_find_what_each_finds_alone(path):
    bed, target, _version, _ = path
    together = probe(bed, target, *loader.DEFAULT)
    assert [r["name"] for r in together["probes"]] == list(loader.DEFAULT)  # in the asked order
    for result in together["probes"]:
        alone = probe(bed, target, result["name"])["probes"][0]
        assert hop_view(result) == hop_view(alone), result["name"]


@pytest.mark.parametrize("spec,probe_name", CASES, ids=[c[0].split(",")[0] for c in CASES])
def test_change_first_seen_after_the_slot(path, spec, probe_name):
    bed, target, version, logs = path
    spec = spec.replace("ADDRESS", "10.9.9.9" if version == 4 else "fd00:9::9")
    if "ADD_ADDR.port" in spec and version == 6:
        pytest.skip("an IPv6 ADD_ADDR with a port does not fit beside timestamps")
    if spec == "ipid-rewrite" and version == 6:
        pytest.skip("IPv6 has no identification field")
    bed.replace_middlebox("slot4", spec)
    try:
        doc = probe(bed, target, probe_name)
    finally:
        bed.replace_middlebox("slot4", None)
    log_path = logs / "middlebox-slot4.jsonl"
    entries = [json.loads(line) for line in log_path.read_text().splitlines()]
    log_path.unlink()
    truth = {truth_field(e["field"]) for e in entries if e["direction"] == "c>s"}
    assert truth, f"{spec} changed nothing on the way to the server"
    result = doc["probes"][0]
    assert "error" not in result, result.get("error")
    first = result["first_change"]
    assert first is not None, f"{probe_name} saw nothing of {spec} (log: {truth})"
    assert first["ttl"] == SLOT_AT + 1, first
    assert first["after_ttl"] == SLOT_AT, first  # (the slot's own quote is unchanged)
    hop = next(h for h in result["hops"] if h["ttl"] == SLOT_AT + 1)
    seen = {c["field"] for c in hop["changes"] if c["first"]}
    assert any(f == t or f.startswith(t + ".") for f in seen for t in truth), (seen, truth)
    before = [h for h in result["hops"] if h["ttl"] <= SLOT_AT]
    assert all(not h["changes"] for h in before)


def test_nat_is_hidden_by_quote_translation(path):
    """A NAT that follows RFC 5508 translates the packet quoted in ICMP errors back: Linux
    NAT does, so no router after it shows the new source, and the probe must not invent one."""
    bed, target, _, logs = path
    bed.replace_middlebox("slot4", "nat")
    try:
        doc = probe(bed, target, "mp_capable")
    finally:
        bed.replace_middlebox("slot4", None)
    log_path = logs / "middlebox-slot4.jsonl"
    fields = {json.loads(line)["field"] for line in log_path.read_text().splitlines()}
    log_path.unlink()
    assert "source" in fields
    result = doc["probes"][0]
    assert result["first_change"] is None
    assert result["destination"]["reached"]


def test_serial_mode_finds_the_same_path(path):
    bed, target, _, _ = path
    doc = probe(bed, target, "mp_capable", serial=True, tries=2)
    result = doc["probes"][0]
    assert doc["mode"] == "serial"
    assert [h["ttl"] for h in result["hops"] if h["silent"]] == [SILENT_AT]
    assert result["destination"]["ttl"] == len(bed.topology.nodes) - 1


def test_cli_from_a_testbed_node_writes_json_and_html_and_its_rules_are_gone(path, tmp_path):
    bed, target, version, _ = path
    html = tmp_path / "probe.html"
    argv = [
        sys.executable,
        "-m",
        "mbtest.cli",
        "probe",
        target,
        "--from",
        "client",
        "--testbed",
        bed.run_id,
        "--probe",
        "mp_capable",
        "--json",
        "-n",
        "--timeout",
        "1",
        "--port",
        str(PORT),
        f"-{version}",
        "--html",
        str(html),
    ]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr  # an unchanged path: no findings
    (line,) = done.stdout.splitlines()  # --json: one document per probe, as each ends
    doc = json.loads(line)
    assert doc["probes"][0]["destination"]["reached"]
    written = json.loads((tmp_path / "probe.json").read_text())
    assert written["probes"] == doc["probes"] and written["schema"] == doc["schema"]
    assert 'id="probe-1-mp_capable"' in html.read_text()
    tool = "iptables" if version == 4 else "ip6tables"
    rules = netns.call_in(
        bed.client_ns, subprocess.run, [tool, "-S", "OUTPUT"], capture_output=True, text=True
    )
    assert "mbtest-probe" not in rules.stdout


def rules_in(bed, version):
    tool = "iptables" if version == 4 else "ip6tables"
    done = netns.call_in(
        bed.client_ns, subprocess.run, [tool, "-S", "OUTPUT"], capture_output=True, text=True
    )
    return [line for line in done.stdout.splitlines() if "mbtest-probe" in line]


def test_sigterm_mid_probe_removes_the_rst_rule(path):
    bed, _target, version, _ = path
    silent_host = "10.200.9.99" if version == 4 else "fd00:200:9::99"
    argv = [
        sys.executable,
        "-m",
        "mbtest.cli",
        "probe",
        silent_host,
        "--from",
        "client",
        "--testbed",
        bed.run_id,
        "--probe",
        "dss",
        "--timeout",
        "5",
        "-n",
    ]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        for _ in range(100):
            if rules_in(bed, version):
                break
            time.sleep(0.05)
        assert rules_in(bed, version), "the probe never installed its RST rule"
        proc.terminate()
        _, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    assert proc.returncode == 143 and "SIGTERM" in err and "Traceback" not in err
    assert rules_in(bed, version) == []


def test_cleanup_removes_rules_whose_probe_was_killed(path):
    bed, _, version, _ = path
    tool = "iptables" if version == 4 else "ip6tables"
    dead = subprocess.Popen(["true"])
    dead.wait()
    for pid in (dead.pid, os.getpid()):
        rule = [
            "-I",
            "OUTPUT",
            "-p",
            "tcp",
            "-m",
            "comment",
            "--comment",
            f"mbtest-probe-abc123-{pid}",
            "-j",
            "DROP",
        ]
        netns.call_in(bed.client_ns, subprocess.run, [tool, *rule], check=True)
    removed = netns.call_in(bed.client_ns, cleanup.remove_orphaned_rules)
    assert removed == [f"{tool} rule mbtest-probe-abc123-{dead.pid}"]
    left = rules_in(bed, version)
    assert len(left) == 1 and str(os.getpid()) in left[0]
    netns.call_in(
        bed.client_ns,
        subprocess.run,
        [
            tool,
            "-D",
            "OUTPUT",
            "-p",
            "tcp",
            "-m",
            "comment",
            "--comment",
            f"mbtest-probe-abc123-{os.getpid()}",
            "-j",
            "DROP",
        ],
        check=True,
    )


def test_every_probe_as_sent_decodes_the_same_in_tshark(path, tmp_path):
    """The crafted segments, as they left, read by our decoder and by tshark's dissector."""
    from mbtest.observe.decode import decode_capture
    from tests.tshark import compare

    bed, target, _, _ = path
    doc = probe(bed, target, "mp_capable", "mp_capable_v0", "mp_join", "dss", "add_addr")
    pcap = tmp_path / "sent.pcap"
    with open(pcap, "wb") as f:
        f.write(struct.pack("<IHHiIII", 0xA1B2C3D4, 2, 4, 0, 0, 65535, 101))  # LINKTYPE_RAW
        for result in doc["probes"]:
            packet = bytes.fromhex(result["sent"]["hex"])
            f.write(struct.pack("<IIII", 1, 0, len(packet), len(packet)) + packet)
    records = list(decode_capture(str(pcap)))
    assert len(records) == 5 and all(r.options for r in records)
    compared, differences = compare(records, str(pcap))
    assert compared > 30 and differences == []


def test_an_unreachable_network_is_one_clear_line():
    name = netns.ns_name(owners.new_run_id(), "bare")
    netns.create(name)  # only a loopback that is down: no route anywhere
    try:
        proc = netns.popen(
            name,
            [
                sys.executable,
                "-m",
                "mbtest.cli",
                "probe",
                "192.0.2.1",
                "--probe",
                "mp_capable",
                "-n",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        _, err = proc.communicate(timeout=60)
    finally:
        netns.remove(name)
    assert proc.returncode == 2
    assert err.strip() == "mbtest: 192.0.2.1 is unreachable from here: Network is unreachable"


def test_a_users_own_probe_file_runs_like_the_built_in_ones(path, tmp_path):
    bed, target, _, logs = path
    own = tmp_path / "mp_capable_checksum.py"
    own.write_text(
        '"""SYN with MP_CAPABLE v1 and flag A set: is the checksum flag cleared?"""\n'
        "from mbtest.mptcp.options import MpCapable\n"
        'NAME = "mp_capable_checksum"\n'
        "def build(session):\n"
        "    return session.syn(MpCapable(version=1, checksum_required=True))\n"
    )
    bed.replace_middlebox("slot4", "mangle-option:field=MP_CAPABLE.checksum_required,value=false")
    try:
        doc = probe(bed, target, str(own))
    finally:
        bed.replace_middlebox("slot4", None)
    (logs / "middlebox-slot4.jsonl").unlink()
    result = doc["probes"][0]
    assert result["name"] == "mp_capable_checksum"
    assert result["summary"].startswith("SYN with MP_CAPABLE v1 and flag A set")
    router = result["hops"][SLOT_AT]["router"]
    assert result["first_change"] == {
        "ttl": SLOT_AT + 1,
        "router": router,
        "after_ttl": SLOT_AT,  # (made between the slot's own quote and the next router's)
        "changes": ["MP_CAPABLE flag A 1 -> 0"],
    }


def test_topo_up_with_a_middlebox_then_probe_from_a_node_then_down():
    """The operator's workflow: a long path up with a middlebox, probes from its client."""
    cli = [sys.executable, "-m", "mbtest.cli"]
    up = subprocess.run(
        [*cli, "topo", "up", "long-path", "--middlebox", "slot4=strip-option:mode=remove"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert up.returncode == 0, up.stderr
    run_id = up.stdout.split()[1]
    try:
        assert "middlebox strip-option:" in up.stdout
        probe_run = subprocess.run(
            [
                *cli,
                "probe",
                "10.200.9.2",
                "--from",
                "client",
                "--testbed",
                run_id,
                "--probe",
                "mp_capable",
                "--json",
                "-n",
                "--timeout",
                "1",
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert probe_run.returncode == 1, probe_run.stderr  # findings: the path changed it
        result = json.loads(probe_run.stdout)["probes"][0]
        assert result["first_change"]["ttl"] == SLOT_AT + 1
        assert result["first_change"]["changes"][-1] == (
            "MP_CAPABLE removed, the TCP header shrank by 4 bytes"
        )
    finally:
        down = subprocess.run(
            [*cli, "topo", "down", run_id], capture_output=True, text=True, timeout=60
        )
    assert down.returncode == 0, down.stderr
    assert not [n for n in netns.listed() if n.startswith(f"mbt-{run_id}")]
