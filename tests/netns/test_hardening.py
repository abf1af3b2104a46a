"""Hardening on the real kernel: malformed segments through live middleboxes, signals to the
whole process group at any moment, and owners that keep their testbeds from cleanup."""

import os
import signal
import socket
import subprocess
import sys
import time

import pytest

from mbtest.experiment import grid
from mbtest.experiment.run import RunConfig, run_traffic
from mbtest.host import links, netfilter, netns, owners
from mbtest.middlebox.base import NFQUEUE
from mbtest.middlebox.catalog import CATALOG
from mbtest.probe import wire
from mbtest.testbed import builder, recorded, topology

MBTEST = [sys.executable, "-m", "mbtest.cli"]


# --- malformed segments through a live middlebox of each userspace behaviour ---------------


def malformed(src: str, dst: str, sport: int) -> list[bytes]:
    """Segments no behaviour can read, each on its own new flow: MPTCP options whose length
    runs past the header, in a SYN and in a data segment, and an option list cut short."""
    out = []
    bad_options = (b"\x1e\xf0\x00\x81", b"\x01\x01\x1e\x20\x20\x00\x00\x00", b"\x02\x04\x05")
    for n, options in enumerate(bad_options):
        options = options.ljust((len(options) + 3) & ~3, b"\x1e")  # (still runs past)
        for flags, payload in (("S", b""), ("PA", b"malformed on purpose")):
            seg = wire.Segment(src, dst, sport + n, 18080, 1000, 1, flags, options=options,
                               payload=payload)  # fmt: skip
            out.append(wire.packet(seg, 64, 4242 + n, 0))
    return out


def send_raw(ns: str, packets: list[bytes], dst: str) -> None:
    def send() -> None:
        family = socket.AF_INET if ":" not in dst else socket.AF_INET6
        with socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW) as sock:
            for packet in packets:
                sock.sendto(packet, (dst, 0))

    netns.call_in(ns, send)


USERSPACE = sorted(name for name, cls in CATALOG.items() if cls.ENGINE == NFQUEUE)


@pytest.mark.parametrize("name", USERSPACE)
def test_a_live_middlebox_survives_malformed_segments_and_keeps_working(tmp_path, name):
    cell = next(c for c in grid.default_grid() if c.behaviours == {name})
    topo = topology.load(cell.topology)
    config = RunConfig(c2s_bytes=cell.c2s_bytes, s2c_bytes=cell.s2c_bytes, text=cell.text,
                       port=cell.port, chunk=cell.chunk, checksums=cell.checksums,
                       stall_timeout=3, deadline=20)  # fmt: skip
    with builder.Testbed(topo, middleboxes=cell.middleboxes, log_dir=str(tmp_path),
                         checksums=cell.checksums) as bed:  # fmt: skip
        server = topo.addresses("server", 4)[0]
        for n, client in enumerate(topo.addresses("client", 4)):  # every path, every slot
            send_raw(bed.client_ns, malformed(client, server, 41000 + 10 * n), server)
            send_raw(bed.server_ns, malformed(server, client, 42000 + 10 * n), client)
        time.sleep(0.3)
        assert bed.check_middleboxes() == {}, "a malformed segment stopped the middlebox"
        doc = run_traffic(bed, config, str(tmp_path))
    (slot,) = cell.middleboxes
    box = doc["middleboxes"][slot]
    assert box["crashed"] is None
    log = [line for line in (tmp_path / f"middlebox-{slot}.jsonl").read_text().splitlines()]
    changes = [entry for entry in log if '"field": "malformed"' not in entry]
    if CATALOG[name].PASSIVE:
        assert box["packets"] > 0
    else:
        assert changes, f"{name} changed nothing after the malformed segments"
    if name in ("strip-option", "drop-option", "ips-alert", "rst-join"):  # they read SYNs
        assert box["malformed"] >= 1, f"{name} never saw the malformed segments"


# --- signals to the process group, at several moments -----------------------------------


def state() -> dict:
    """Everything mbtest may create on this machine, as sets of names."""
    rules = {r.comment for r in netfilter.owned_rules()}
    running = subprocess.run(["pgrep", "-f", "mbtest.middlebox|mbtest.experiment.cell|tcpdump"],
                             capture_output=True, text=True).stdout.split()  # fmt: skip
    try:
        run_dir = set(os.listdir(owners.STATE_DIR))
    except FileNotFoundError:
        run_dir = set()
    return {
        "namespaces": set(netns.listed()),
        "links": set(links.root_links(netns.PREFIX.rstrip("-"))),
        "rules": rules,
        "processes": set(running),
        "state": run_dir,
    }


def left(before: dict, after: dict) -> dict:
    return {k: after[k] - before[k] for k in before if after[k] - before[k]}


def interrupt(argv: list[str], delay: float, sig: int, cwd) -> subprocess.CompletedProcess:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            start_new_session=True, cwd=cwd)  # fmt: skip
    time.sleep(delay)
    os.killpg(proc.pid, sig)  # the whole process group, as a terminal's Ctrl-C does
    out, err = proc.communicate(timeout=90)
    return subprocess.CompletedProcess(argv, proc.returncode, out, err)


def settle(before: dict, timeout: float = 5.0) -> dict:
    deadline = time.monotonic() + timeout
    while True:
        remaining = left(before, state())
        if not remaining or time.monotonic() > deadline:
            return remaining
        time.sleep(0.1)


SIGNALS = [(signal.SIGINT, 130, "interrupted"), (signal.SIGTERM, 143, "terminated by SIGTERM")]
MOMENTS = {  # (command, delays in seconds: start-up, build, traffic, teardown...)
    "matrix": (["matrix", "--middlebox", "none", "--middlebox", "pass", "--checksum", "off",
                "--topology", "single-path", "-j", "2"], (0.8, 1.6, 2.6)),
    "run": (["run", "--middlebox", "slot=strip-option"], (0.7, 1.3, 2.0)),
    "topo up": (["topo", "up", "single-path", "--middlebox", "slot=pass"], (0.6, 1.1)),
}  # fmt: skip


@pytest.mark.parametrize("sig,code,message", SIGNALS, ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("command", sorted(MOMENTS))
def test_a_signal_to_the_process_group_leaves_nothing(tmp_path, command, sig, code, message):
    args, delays = MOMENTS[command]
    for n, delay in enumerate(delays):
        before = state()
        out = tmp_path / f"out{n}"
        extra = [] if command == "topo up" else ["-o", str(out)]
        run = interrupt([*MBTEST, *args, *extra], delay, sig, tmp_path)
        assert "Traceback" not in run.stderr, run.stderr
        if run.returncode == code:  # stopped by the signal
            assert message in run.stderr and "everything this run created was removed" in (
                run.stderr
            ), run.stderr
        else:  # it had finished before the signal came: a result, not a kill
            assert run.returncode in (0, 1), (delay, run.returncode, run.stderr)
            if command == "topo up":  # and the testbed is the user's: taken down here
                beds = [
                    b for b in recorded.up() if set(b.namespaces.values()) - before["namespaces"]
                ]
                for bed in beds:
                    recorded.tear_down(bed.run_id)
        assert settle(before) == {}, f"{command} at {delay} s left things behind"
        if command == "matrix" and (out / "results.jsonl").exists():
            verdicts = [line for line in (out / "results.jsonl").read_text().splitlines()]
            assert not [v for v in verdicts if '"verdict": "error"' in v], verdicts
        assert not (tmp_path / "reports").exists()


@pytest.mark.parametrize("sig,code,message", SIGNALS, ids=["SIGINT", "SIGTERM"])
def test_a_signal_to_a_probe_leaves_no_rule(tmp_path, sig, code, message):
    topo = topology.load("long-path", {"silent_at": 2})
    with builder.Testbed(topo, log_dir=str(tmp_path)) as bed:
        target = topo.addresses("server", 4)[0]
        for delay in (0.9, 1.6):
            argv = [*MBTEST, "probe", "10.200.9.77", "--from", "client", "--testbed",
                    bed.run_id, "-n", "--timeout", "3", "-o", str(tmp_path / "p.json")]  # fmt: skip
            run = interrupt(argv, delay, sig, tmp_path)
            assert "Traceback" not in run.stderr
            if run.returncode != 0:
                assert run.returncode == code and message in run.stderr, run.stderr
            rules = netns.call_in(bed.client_ns, netfilter.owned_rules)
            assert rules == [], rules
        assert target  # (the probe went toward a silent address beyond the server)


# --- owners: cleanup leaves a live owner's testbed, removes a dead one's ----------------


def test_cleanup_keeps_a_live_owners_testbed_and_removes_it_once_the_owner_is_killed(tmp_path):
    before = set(netns.listed())
    argv = [*MBTEST, "topo", "run", "single-path", "--bytes", "200000000000", "--deadline",
            "300", "-o", str(tmp_path)]  # fmt: skip
    owner = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 30
        while len(set(netns.listed()) - before) < 5 and time.monotonic() < deadline:
            time.sleep(0.1)
        mine = set(netns.listed()) - before
        assert len(mine) == 5
        time.sleep(0.5)  # in the transfer
        run = subprocess.run([*MBTEST, "cleanup"], capture_output=True, text=True, timeout=60)
        assert run.returncode == 0 and "kept testbed" in run.stdout, run.stdout
        assert mine <= set(netns.listed())  # still there
        assert owner.poll() is None  # and its owner still working
    finally:
        owner.kill()
        owner.communicate(timeout=30)
    run = subprocess.run([*MBTEST, "cleanup"], capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    for name in mine:
        assert f"namespace {name}" in run.stdout
    assert not mine & set(netns.listed())


def test_a_reused_pid_does_not_keep_a_dead_runs_testbed(tmp_path):
    """The record names a live pid (ours), but with another start time: its owner is dead."""
    run_id = owners.new_run_id()
    name = netns.ns_name(run_id, "stale")
    record = owners.Owner(run_id, "testbed", namespaces={"stale": name})
    record.started = (record.started or 0) + 12345  # the pid is ours now, the process was not
    record.save()
    netns.create(name)
    try:
        assert not record.alive
        run = subprocess.run([*MBTEST, "cleanup"], capture_output=True, text=True, timeout=60)
        assert f"namespace {name}" in run.stdout and not netns.exists(name)
        assert owners.find(run_id) is None
    finally:
        if netns.exists(name):
            netns.remove(name)
        record.forget()
