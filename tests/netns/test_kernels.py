"""Guests on another kernel: Debian's 6.1 cloud kernel fetched once into a cache of this
run, booted under QEMU (microvm, software emulation), a command run in it with its output
and exit status; a run stopped by SIGTERM leaves no QEMU, virtiofsd, namespace or lock.
Skipped, saying why, where the machine has no QEMU."""

import fcntl
import json
import os
import signal
import subprocess
import sys
import time

import pytest

from mbtest.host import kernels, netns, vm

VERSION = "6.1"


@pytest.fixture(scope="module")
def cache(tmp_path_factory):
    if os.geteuid() != 0:
        pytest.skip("guests need root")
    try:
        vm.tools()
    except Exception as e:
        pytest.skip(f"this machine cannot run guests: {e}")
    folder = tmp_path_factory.mktemp("kernels")
    os.environ["MBTEST_KERNEL_CACHE"] = str(folder)
    try:
        kernels.fetch(VERSION)
        yield folder
    finally:
        os.environ.pop("MBTEST_KERNEL_CACHE", None)


def mbtest(cache, *args, **kw):
    env = dict(os.environ, MBTEST_KERNEL_CACHE=str(cache))
    argv = [sys.executable, "-m", "mbtest.cli", *args]
    return subprocess.run(argv, capture_output=True, text=True, env=env, timeout=300, **kw)


def guest_processes(cache) -> list[str]:
    ps = subprocess.run(["ps", "-ewwo", "pid,args"], capture_output=True, text=True).stdout
    ours = ("qemu-system", "virtiofsd")
    return [line for line in ps.splitlines() if any(t in line for t in ours)
            and (str(cache) in line or "/run/mbtest/" in line)]  # fmt: skip


def test_an_older_kernel_is_cached_listed_booted_and_runs_a_command(cache):
    listed = mbtest(cache, "kernel", "ls")
    assert listed.returncode == 0 and "6.1.0-" in listed.stdout and "MB" in listed.stdout
    run = mbtest(cache, "kernel", "run", VERSION, "--", "sh", "-c",
                 "uname -r; cat /proc/sys/net/mptcp/enabled; echo oops >&2; exit 3")  # fmt: skip
    release, enabled = run.stdout.split()
    assert release.startswith("6.1.0-") and release != os.uname().release
    assert enabled == "1"  # (MPTCP, on another kernel than the host's)
    assert run.stderr.startswith("oops") and run.returncode == 3
    assert not guest_processes(cache)


def test_a_version_debian_does_not_have_is_one_sentence_and_leaves_nothing(cache):
    run = mbtest(cache, "kernel", "fetch", "5.10")
    assert run.returncode != 0 and "Traceback" not in run.stderr
    assert run.stderr.splitlines()[-1].startswith("mbtest: kernel 5.10: Debian's kernels before")
    assert not [p for p in cache.iterdir() if p.name.startswith(".fetch-")]


def test_a_guest_stopped_by_sigterm_leaves_no_qemu_virtiofsd_namespace_or_lock(cache):
    before = set(netns.listed())
    env = dict(os.environ, MBTEST_KERNEL_CACHE=str(cache))
    argv = [sys.executable, "-m", "mbtest.cli", "kernel", "run", VERSION, "--", "sleep", "60"]
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("qemu" in p for p in guest_processes(cache)):
        time.sleep(0.2)
    assert any("qemu" in p for p in guest_processes(cache)), "the guest never started"
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "everything this run created was removed" in stderr
    assert not guest_processes(cache)
    assert set(netns.listed()) - before == set()
    with open(cache / ".lock", "w") as f:  # (free: no fetch holds it)
        fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)


def gone(cache, before, timeout=10.0) -> bool:
    """No guest process and no new namespace left (a killed QEMU takes a moment to go)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if not guest_processes(cache) and not set(netns.listed()) - before:
            return True
        time.sleep(0.1)
    return False


def verdicts(path) -> dict:
    doc = json.loads(path.read_text())
    return {p["name"]: p["conformance"]["verdict"] for p in doc["probes"]}


def test_a_server_on_linux_6_1_answers_the_probes_and_the_suite_as_the_host_does(cache, tmp_path):
    before = set(netns.listed())
    up = mbtest(cache, "topo", "up", "single-path", "--listen", "80", "--kernel", VERSION, "--json")
    assert up.returncode == 0, up.stderr
    run_id = json.loads(up.stdout)["testbed"]
    try:
        assert any("qemu" in p for p in guest_processes(cache))
        paths = mbtest(cache, "probe", "10.1.4.2", "--from", "client", "--testbed", run_id, "-n",
                       "-o", str(tmp_path / "paths.json"))  # fmt: skip
        assert paths.returncode == 0, paths.stderr  # (no change, every probe answered)
        answers = {p["name"]: p["destination"] for p in
                   json.loads((tmp_path / "paths.json").read_text())["probes"]}  # fmt: skip
        assert answers["mp_capable"]["mptcp"] == ["MP_CAPABLE v1 flags H, 1 key"]
        assert answers["mp_join"]["check"] == "its HMAC is valid"
        assert answers["dss"]["check"] == "the data is acknowledged at the MPTCP level"
        guest = tmp_path / "guest.json"
        mbtest(cache, "probe", "10.1.4.2", "--from", "client", "--testbed", run_id, "-n",
               "--suite", "conformance", "-o", str(guest))  # fmt: skip
    finally:
        down = mbtest(cache, "topo", "down", run_id)
    assert down.returncode == 0, down.stderr
    assert gone(cache, before), guest_processes(cache)
    up = mbtest(cache, "topo", "up", "single-path", "--listen", "80", "--json")
    run_id = json.loads(up.stdout)["testbed"]
    host = tmp_path / "host.json"
    try:
        mbtest(cache, "probe", "10.1.4.2", "--from", "client", "--testbed", run_id, "-n",
               "--suite", "conformance", "-o", str(host))  # fmt: skip
    finally:
        mbtest(cache, "topo", "down", run_id)
    assert verdicts(guest) == verdicts(host)  # (Linux 6.1 and this host's kernel agree)
    assert len(verdicts(guest)) == 12


def test_topo_up_of_a_guest_stopped_by_sigterm_while_it_boots_leaves_nothing(cache):
    before = set(netns.listed())
    env = dict(os.environ, MBTEST_KERNEL_CACHE=str(cache))
    argv = [sys.executable, "-m", "mbtest.cli", "topo", "up", "single-path", "--listen", "80",
            "--kernel", VERSION]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("qemu" in p for p in guest_processes(cache)):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 143 and "everything this run created was removed" in stderr, stderr
    assert gone(cache, before), guest_processes(cache)


def test_a_killed_guest_run_is_removed_by_cleanup(cache):
    """SIGKILL leaves QEMU running in the run's namespace: mbtest cleanup, seeing the owner
    dead, removes the namespace and so the guest."""
    before = set(netns.listed())
    env = dict(os.environ, MBTEST_KERNEL_CACHE=str(cache))
    argv = [sys.executable, "-m", "mbtest.cli", "kernel", "run", VERSION, "--", "sleep", "60"]
    proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=env,
                            start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline and not any("qemu" in p for p in guest_processes(cache)):
        time.sleep(0.1)
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    assert any("qemu" in p for p in guest_processes(cache))  # (nothing could stop it)
    cleaned = mbtest(cache, "cleanup")
    assert cleaned.returncode == 0, cleaned.stderr
    assert gone(cache, before), guest_processes(cache)
