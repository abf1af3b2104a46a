"""Each behaviour in a real slot: the captures on both sides of the slot show exactly the
declared change and nothing else, the ground-truth log matches that diff, and the endpoints
see what the behaviour implies."""

import json

import pytest

from mbtest.experiment.run import RunConfig, run_traffic
from mbtest.host import netns
from mbtest.observe import slotdiff
from mbtest.testbed import builder, topology

SP = "single-path"
CASES = [
    # topology, slot, spec, kinds the slot diff must show (exactly), counters that must move
    (SP, "slot", "pass", set(), {"server": ["MPCapableACKRX"]}),
    (SP, "slot", "ips-alert", set(), {"server": ["MPCapableACKRX"]}),
    (
        SP,
        "slot",
        "strip-option:segments=syn,mode=nop",
        {"tcp.options"},
        {"client": ["MPCapableFallbackSYNACK"]},
    ),
    (
        SP,
        "slot",
        "strip-option:segments=syn,mode=remove",
        {"tcp.options"},
        {"client": ["MPCapableFallbackSYNACK"]},
    ),
    (
        SP,
        "slot",
        "strip-option:segments=syn,mode=eol",
        {"tcp.options"},
        {"client": ["MPCapableFallbackSYNACK"]},
    ),
    (
        SP,
        "slot",
        "strip-option:subtypes=DSS,segments=data,mode=remove",
        {"tcp.options"},
        {"client": ["DssFallback"]},
    ),
    (SP, "slot", "drop-option:segments=syn", {"dropped"}, {"client": ["MPCapableSYNTX"]}),
    ("dual-path", "slotb", "rst-join", {"dropped", "injected"}, {"client": ["MPJoinSynTx"]}),
    (
        SP,
        "slot",
        "mangle-option:field=MP_CAPABLE.checksum_required,value=0,segments=synack",
        {"tcp.options"},
        {"server": ["MPCapableACKRX"]},
    ),
    (
        SP,
        "slot",
        "payload-flip:segment=20",
        {"payload"},
        {"server": ["DataCsumErr", "MPFailTx"], "client": ["MPFailRx", "InfiniteMapTx"]},
    ),
    (
        SP,
        "slot",
        "kernel-optstrip:segments=syn",
        {"tcp.options"},
        {"client": ["MPCapableFallbackSYNACK"]},
    ),
    (SP, "slot", "nat", {"source", "destination"}, {"server": ["MPCapableACKRX"]}),
    (SP, "slot", "syn-proxy", None, {"client": ["MPCapableFallbackSYNACK"]}),
    (SP, "slot", "seq-rewrite:delta=12345", {"tcp.seq", "tcp.ack"}, {"server": ["MPCapableACKRX"]}),
    (SP, "slot", "window-shrink:divisor=4", {"tcp.window"}, {"server": ["MPCapableACKRX"]}),
    (SP, "slot", "ipid-rewrite", {"ip.id"}, {"server": ["MPCapableACKRX"]}),
    (SP, "slot", "mss-clamp:value=1000", {"tcp.options"}, {"server": ["MPCapableACKRX"]}),
]


# The userspace behaviours again over IPv6 (ipid-rewrite has no IPv4 ID to rewrite there).
USERSPACE_V6 = {
    "pass",
    "ips-alert",
    "strip-option",
    "drop-option",
    "rst-join",
    "mangle-option",
    "payload-flip",
    "seq-rewrite",
    "window-shrink",
}
CASES_V6 = [c for c in CASES if c[2].split(":")[0] in USERSPACE_V6]
ALL_CASES = [(*c, 4) for c in CASES] + [(*c, 6) for c in CASES_V6]


@pytest.mark.parametrize(
    "name,slot,spec,kinds,moved,ip_version", ALL_CASES, ids=[f"{c[2]}-v{c[5]}" for c in ALL_CASES]
)
def test_behaviour_does_exactly_what_it_logs(tmp_path, name, slot, spec, kinds, moved, ip_version):
    topo = topology.load(name)
    config = RunConfig(
        c2s_bytes=200_000,
        s2c_bytes=200_000,
        connect_timeout=15,
        stall_timeout=5,
        ip_version=ip_version,
    )
    with builder.Testbed(
        topo, middleboxes={slot: spec}, log_dir=str(tmp_path), checksums=True, ip_version=ip_version
    ) as bed:
        sides = bed.slot_sides(slot)
        doc = run_traffic(bed, config, str(tmp_path))
    assert doc["middleboxes"][slot]["crashed"] is None
    assert doc["connect"]["ok"]
    if not spec.startswith("payload-flip"):
        # A flipped byte under checksums makes this kernel stall the transfer (a finding for
        # the matrix to report); every other behaviour here lets all the data through.
        assert all(s["received"] == s["requested"] for s in doc["transfer"]["streams"])
    for side, names in moved.items():
        for counter in names:
            assert doc["counters"][side].get(counter, 0) >= 1, (side, counter, doc["counters"])

    changes = slotdiff.diff(
        tmp_path / f"{slot}-{sides['client']}.pcap", tmp_path / f"{slot}-{sides['server']}.pcap"
    )
    if spec.startswith("payload-flip"):
        # The flip stalls this kernel: the retransmissions still in flight when the testbed
        # is torn down may show as dropped or unmatched; the flip itself must be exact.
        changes = [c for c in changes if c["kind"] not in ("dropped", "injected")]
    if kinds is not None:  # SYNPROXY re-originates the handshake: no packet-by-packet diff
        assert {c["kind"] for c in changes} == kinds
    log = [
        json.loads(line) for line in (tmp_path / f"middlebox-{slot}.jsonl").read_text().splitlines()
    ]
    if spec == "ips-alert":
        assert [e["field"] for e in log] == ["alert", "alert"]
        return
    if spec == "syn-proxy":
        return
    if spec == "nat":
        (mapping,) = log
        assert {c["after"] for c in changes if c["kind"] == "source"} == {mapping["after"]}
        return
    seen = {(c["direction"], c["seq"], c["kind"]) for c in changes if c["kind"] != "injected"}
    logged = {
        (e["direction"], e["seq"], slotdiff.log_kind(e))
        for e in log
        if slotdiff.log_kind(e) != "injected"
    }
    assert seen == logged
    injected = [c for c in changes if c["kind"] == "injected"]
    assert len(injected) == sum(slotdiff.log_kind(e) == "injected" for e in log)


def test_a_middlebox_that_cannot_start_is_named_and_nothing_is_left(tmp_path):
    import subprocess
    import sys

    from mbtest.host import netns

    before = set(netns.listed())
    argv = [
        sys.executable,
        "-m",
        "mbtest.cli",
        "topo",
        "run",
        "single-path",
        "-o",
        str(tmp_path),
        "--middlebox",
        "slot=nat:to=nowhere.example",
    ]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 2 and run.stderr.count("\n") == 1
    assert run.stderr.startswith(
        "mbtest: middlebox nat in slot crashed: iptables -t nat -A POSTROUTING"
    )
    assert set(netns.listed()) == before


@pytest.mark.parametrize("start", ["forked", "interpreter"])
def test_a_middlebox_that_dies_mid_run_is_reported_as_crashed(tmp_path, start, monkeypatch):
    """Both ways of starting a middlebox: forked from its (single-threaded) parent, which
    has the code loaded, or a fresh interpreter."""
    if start == "interpreter":
        monkeypatch.setenv("MBTEST_MIDDLEBOX_START", "interpreter")
    else:
        monkeypatch.delenv("MBTEST_MIDDLEBOX_START", raising=False)
    topo = topology.load(SP)
    config = RunConfig(c2s_bytes=100_000, s2c_bytes=100_000, stall_timeout=1.5)
    with builder.Testbed(topo, middleboxes={"slot": "pass"}, log_dir=str(tmp_path)) as bed:
        process = bed.processes["slot"].proc
        assert isinstance(process, netns.Forked) == (start == "forked" and netns.can_fork())
        process.kill()
        doc = run_traffic(bed, config, str(tmp_path))
    assert doc["middleboxes"]["slot"]["crashed"] == "middlebox pass in slot crashed: exit -9"
    assert not doc["connect"]["ok"] or doc["transfer"]["stalled"]


def reshaped(tmp_path, spec, topo=SP, checksums=False, **config):
    with builder.Testbed(
        topology.load(topo), middleboxes={"slot": spec}, log_dir=str(tmp_path), checksums=checksums
    ) as bed:
        sides = bed.slot_sides("slot")
        config = {"c2s_bytes": 200_000, "s2c_bytes": 200_000, **config}
        doc = run_traffic(bed, RunConfig(**config), str(tmp_path))
    assert doc["middleboxes"]["slot"]["crashed"] is None
    log = [
        json.loads(line) for line in (tmp_path / "middlebox-slot.jsonl").read_text().splitlines()
    ]
    pcaps = [tmp_path / f"slot-{sides[side]}.pcap" for side in ("client", "server")]
    return doc, log, pcaps


def data_segments(pcap):
    from mbtest.observe.decode import decode_capture

    return sum(
        1
        for r in decode_capture(pcap, only_mptcp=False)
        if r.direction == "c>s" and r.payload_length
    )


def test_split_doubles_the_segments_and_mptcp_carries_on(tmp_path):
    doc, log, (before, after) = reshaped(tmp_path, "split")
    assert [s["intact"] for s in doc["transfer"]["streams"]] == [True, True]
    assert doc["sockets"]["client"]["mptcp"] and doc["sockets"]["server"]["mptcp"]
    assert {e["field"] for e in log} == {"split"}
    assert data_segments(after) == data_segments(before) + len(log)


def test_coalesce_merges_segments_where_the_mtu_allows(tmp_path):
    jumbo = tmp_path / "jumbo.toml"
    text = (
        topology.TOPOLOGY_DIR.joinpath("single-path.toml")
        .read_text()
        .replace('name = "single-path"', 'name = "jumbo"')
    )
    for node in ('"slot", ifname = "eth1"', '"r2", ifname = "eth1"'):
        text = text.replace(
            f"[[links]]\na = {{ node = {node}", f"[[links]]\nmtu = 9000\na = {{ node = {node}"
        )
    jumbo.write_text(text)
    doc, log, (before, after) = reshaped(tmp_path, "coalesce:max_size=8000", topo=str(jumbo))
    assert [s["intact"] for s in doc["transfer"]["streams"]] == [True, True]
    merged = sum(e["before"] for e in log) - len(log)
    assert log and data_segments(after) == data_segments(before) - merged


@pytest.mark.parametrize("checksums", [False, True], ids=["no-checksum", "checksum"])
def test_payload_rewrite_changes_the_length_and_mptcp_notices(tmp_path, checksums):
    text = "GET /mptcp/index.html HTTP/1.1\r\nHost: example\r\n\r\n"
    spec = "payload-rewrite:find=mptcp,replace=MPTCP-ALG"
    doc, log, _ = reshaped(tmp_path, spec, checksums=checksums, text=text, stall_timeout=3)
    assert any(e["field"] == "payload (rewrite)" for e in log)
    c2s = doc["transfer"]["streams"][0]
    assert not c2s["intact"]
    assert doc["counters"]["server"].get("DSSCorruptionFallback", 0) >= 1
    if checksums:
        assert doc["counters"]["server"].get("DataCsumErr", 0) >= 1


def test_transparent_proxy_terminates_mptcp_and_relays_plain_tcp(tmp_path):
    doc, log, _ = reshaped(tmp_path, "transparent-proxy", checksums=True)
    assert [s["intact"] for s in doc["transfer"]["streams"]] == [True, True]
    assert doc["sockets"]["client"]["mptcp"] is False and doc["sockets"]["server"]["mptcp"] is False
    assert doc["counters"]["client"]["MPCapableFallbackSYNACK"] == 1
    assert not doc["counters"]["server"].get("MPCapableSYNRX")  # the server only met the proxy
    (entry,) = log
    assert entry["after"].startswith("10.1.3.1:") and "plain TCP" in entry["after"]


def test_ftp_alg_rewrites_port_commands_and_nats(tmp_path):
    text = "PORT 10,1,1,1,200,10\r\n"  # one command per segment, as on a control connection
    sizes = {"c2s_bytes": len(text) * 50, "s2c_bytes": 1_000, "chunk": len(text)}
    doc, log, (before, after) = reshaped(tmp_path, "ftp-alg", port=21, text=text, **sizes)
    (mapping,) = [e for e in log if e["field"] == "source"]
    assert mapping["after"].startswith("10.1.3.100:")
    rewrites = [e for e in log if e["field"] == "payload (kernel)"]
    assert rewrites and b"10,1,3,100" in bytes.fromhex(rewrites[0]["after"])
    assert any(e["field"] == "tcp.seq (kernel)" for e in log)  # the helper shifted later numbers
    kinds = {c["kind"] for c in slotdiff.diff(before, after)}
    assert {"source", "tcp.seq"} <= kinds  # (rewritten segments change length: not paired)
    c2s = doc["transfer"]["streams"][0]
    assert not doc["transfer"]["stalled"]
    assert doc["counters"]["server"].get("DSSCorruptionFallback", 0) >= 1
    if c2s["drained"]:
        # Linux sometimes leaves the commands after the fallback in its out-of-order queue:
        # acknowledged on the subflow, never delivered (seen in CI runs: 546 and 788 of the
        # 1100+ bytes); the run must say so as it is, everything sent and acknowledged
        assert c2s["received"] < c2s["sent"] == c2s["requested"] and not c2s["error"]
        assert doc["counters"]["server"].get("OFOQueue", 0) >= 1
    else:
        assert c2s["received"] > c2s["requested"]  # the longer commands, all of them


@pytest.mark.parametrize("spec", ["pass", "payload-flip:every=3"])
def test_every_packet_behaviours_run_on_the_native_fast_path(tmp_path, spec, monkeypatch):
    """The C fast path serves pass and payload-flip (the slot-diff tests above check its
    log against the captures); MBTEST_NATIVE=0 keeps the Python engine, whose log lines the
    fast path's match key for key and value for value."""
    import os

    from mbtest.middlebox import native

    path, why = native.binary()
    assert path is not None and os.access(path, os.X_OK), why  # make setup installs gcc
    config = RunConfig(c2s_bytes=300_000, s2c_bytes=0, stall_timeout=5)
    seen = {}
    for engine in ("native", "python"):
        if engine == "python":
            monkeypatch.setenv("MBTEST_NATIVE", "0")
        out = tmp_path / engine
        out.mkdir()
        bed = builder.Testbed(topology.load(SP), middleboxes={"slot": spec}, log_dir=str(out))
        with bed:
            doc = run_traffic(bed, config, str(out))
        assert doc["middleboxes"]["slot"]["crashed"] is None
        assert all(s["received"] == s["requested"] for s in doc["transfer"]["streams"])
        stats = json.loads((out / "middlebox-slot.jsonl.stats.json").read_text())
        assert stats["engine"] == engine and stats["packets"] > 200
        lines = (out / "middlebox-slot.jsonl").read_text().splitlines()
        entries = [json.loads(line) for line in lines]
        keys = [
            "t",
            "behaviour",
            "flow",
            "direction",
            "packet",
            "seq",
            "flags",
            "segment",
            "payload",
            "field",
            "before",
            "after",
        ]
        assert all(list(e) == keys for e in entries)
        for e in entries:
            assert bytes.fromhex(e["after"]) == bytes(b ^ 0xFF for b in bytes.fromhex(e["before"]))
        seen[engine] = (
            {(e["behaviour"], e["direction"], e["field"], tuple(e["segment"])) for e in entries},
            len(entries),
        )
    if spec == "pass":
        assert seen["native"] == seen["python"] == (set(), 0)
    else:
        flipped = {("payload-flip", "c>s", "payload[0:1]", ("data",))}
        assert seen["native"][0] == seen["python"][0] == flipped
        assert abs(seen["native"][1] - seen["python"][1]) <= seen["python"][1] // 10
