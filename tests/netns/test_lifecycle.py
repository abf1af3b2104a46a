"""Nothing is left behind: not on success, not on SIGTERM or Ctrl-C, and `mbtest cleanup`
removes what a SIGKILL left. Bad input is one line, a non-zero exit and nothing created."""

import os
import signal
import subprocess
import sys
import time

import pytest

from mbtest.host import netns
from mbtest.testbed import recorded, topology


def start(*args, tmp_path):
    return subprocess.Popen(
        [sys.executable, "-m", "mbtest.cli", *args, "-o", str(tmp_path / "out")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for_testbed(before: set[str], proc, timeout=30.0) -> set[str]:
    """Wait until the run's namespaces exist and its tcpdumps run."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        mine = set(netns.listed()) - before
        if len(mine) == 5 and all(netns.pids(n) for n in mine if n.endswith(("client", "server"))):
            return mine
        assert proc.poll() is None, proc.communicate()
        time.sleep(0.05)
    raise AssertionError("the testbed did not come up")


LONG_RUN = ("topo", "run", "single-path", "--bytes", "200000000000", "--deadline", "300")


@pytest.mark.parametrize(
    "sig,code,message",
    [(signal.SIGTERM, 143, "terminated by SIGTERM"), (signal.SIGINT, 130, "interrupted")],
)
def test_a_signal_mid_transfer_tears_everything_down(tmp_path, sig, code, message):
    before = set(netns.listed())
    proc = start(*LONG_RUN, tmp_path=tmp_path)
    mine = wait_for_testbed(before, proc)
    time.sleep(0.5)  # inside the transfer
    proc.send_signal(sig)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == code
    assert message in err and err.count("\n") == 1 and "Traceback" not in err
    assert not mine & set(netns.listed())
    assert not [b for b in recorded.up() if set(b.namespaces.values()) & mine]
    leftover = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftover == ""


def test_cleanup_removes_what_a_sigkill_left(tmp_path):
    before = set(netns.listed())
    proc = start(*LONG_RUN, tmp_path=tmp_path)
    mine = wait_for_testbed(before, proc)
    time.sleep(0.5)  # inside the transfer, the captures running
    proc.kill()
    proc.communicate(timeout=10)
    assert mine <= set(netns.listed())  # SIGKILL leaves them
    cleanup = [sys.executable, "-m", "mbtest.cli", "cleanup"]
    run = subprocess.run(cleanup, capture_output=True, text=True, timeout=60)
    assert run.returncode == 0
    for name in mine:
        assert f"namespace {name}" in run.stdout
    assert "killed" in run.stdout  # its tcpdumps
    assert not mine & set(netns.listed())
    assert subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True).stdout == b""
    again = subprocess.run(
        [sys.executable, "-m", "mbtest.cli", "cleanup"], capture_output=True, text=True
    )
    assert again.returncode == 0 and again.stdout.splitlines()[0] == "nothing to remove"
    assert "removed" not in again.stdout  # (what a user has up is listed as kept, not removed)


def test_topo_up_ls_down(tmp_path):
    cli = [sys.executable, "-m", "mbtest.cli", "topo"]
    up = subprocess.run([*cli, "up", "dual-path"], capture_output=True, text=True, timeout=60)
    assert up.returncode == 0, up.stderr
    run_id = up.stdout.split()[1]
    assert f"ip netns exec mbt-{run_id}-client bash" in up.stdout
    try:
        listing = subprocess.run([*cli, "ls"], capture_output=True, text=True, timeout=30).stdout
        assert f"{run_id}  dual-path" in listing and "single-path" in listing
        assert "owner: topo up (until topo down)" in listing and "age: " in listing
        kept = subprocess.run([sys.executable, "-m", "mbtest.cli", "cleanup", "--dry-run"],
                              capture_output=True, text=True, timeout=30).stdout  # fmt: skip
        assert f"kept testbed {run_id} (dual-path" in kept and "brought up by topo up" in kept
        assert f"mbt-{run_id}" not in kept.split("kept")[0]  # nothing of it would be removed
    finally:
        down = subprocess.run([*cli, "down", run_id], capture_output=True, text=True, timeout=60)
    assert down.returncode == 0 and "removed 7 namespaces" in down.stdout
    assert not [n for n in netns.listed() if n.startswith(f"mbt-{run_id}")]


def test_mptcp_disabled_is_one_clear_line_and_leaves_nothing(tmp_path):
    path = "/proc/sys/net/mptcp/enabled"
    before = set(netns.listed())
    with open(path) as f:
        saved = f.read().strip()
    try:
        with open(path, "w") as f:
            f.write("0")
        run = subprocess.run(
            [sys.executable, "-m", "mbtest.cli", "topo", "run", "single-path"],
            capture_output=True,
            text=True,
            timeout=60,
            cwd=tmp_path,  # the default reports/ folder: it must not be made for nothing
        )
    finally:
        with open(path, "w") as f:
            f.write(saved)
    assert run.returncode == 3  # the machine cannot run it: a harness error, not a usage one
    assert (
        run.stderr
        == "mbtest: MPTCP is disabled on this machine: run sysctl -w net.mptcp.enabled=1\n"
    )
    assert set(netns.listed()) == before
    assert list(tmp_path.iterdir()) == []


def test_mptcp_disabled_in_a_node_is_one_clear_line(tmp_path):
    topo = tmp_path / "off.toml"
    original = topology.TOPOLOGY_DIR.joinpath("single-path.toml").read_text()
    off = 'role = "client"\nsysctls = { "net.mptcp.enabled" = 0 }\n'
    text = original.replace('role = "client"\n', off, 1)
    topo.write_text(text)
    before = set(netns.listed())
    argv = [sys.executable, "-m", "mbtest.cli", "topo", "run", str(topo), "-o", str(tmp_path)]
    run = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert run.returncode == 3
    assert "MPTCP is disabled in namespace mbt-" in run.stderr and run.stderr.count("\n") == 1
    assert set(netns.listed()) == before


def test_not_root_is_one_clear_line(monkeypatch, capsys, tmp_path):
    from mbtest import cli

    monkeypatch.chdir(tmp_path)  # the default reports/ folder: it must not be made for nothing
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    monkeypatch.setattr(sys, "argv", ["mbtest", "topo", "run", "single-path"])
    before = set(netns.listed())
    with pytest.raises(SystemExit) as exit_info:
        cli.main()
    assert exit_info.value.code == 3
    assert (
        capsys.readouterr().err
        == "mbtest: mbtest needs root for network namespaces: run it with sudo\n"
    )
    assert set(netns.listed()) == before
    assert list(tmp_path.iterdir()) == []
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)


def test_a_malformed_topology_file_is_one_clear_line(tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text("[[nodes]]\nname = 'client'\nrole = 'client'\n")
    run = subprocess.run(
        [sys.executable, "-m", "mbtest.cli", "topo", "up", str(bad)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert run.returncode == 2
    assert run.stderr == "mbtest: bad.toml: needs exactly one server node (or targets), found 0\n"
