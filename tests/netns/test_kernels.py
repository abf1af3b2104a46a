"""Guests on another kernel: Debian's 6.1 cloud kernel fetched once into a cache of this
run, booted under QEMU (microvm, software emulation), a command run in it with its output
and exit status; matrix cells with their endpoints on it, judged as on the host; a run
stopped by SIGTERM leaves no QEMU, virtiofsd, namespace or lock, a killed one is removed by
cleanup. Skipped, saying why, where the machine has no QEMU."""

import fcntl
import glob
import json
import os
import shutil
import signal
import subprocess
import sys
import time

import pytest

from mbtest.host import kernels, netns, vm
from tests.schemas import validate

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
               "--suite", "conformance", "-t", "6", "-o", str(guest))  # fmt: skip
    finally:
        down = mbtest(cache, "topo", "down", run_id)
    assert down.returncode == 0, down.stderr
    assert gone(cache, before), guest_processes(cache)
    up = mbtest(cache, "topo", "up", "single-path", "--listen", "80", "--json")
    run_id = json.loads(up.stdout)["testbed"]
    host = tmp_path / "host.json"
    try:
        mbtest(cache, "probe", "10.1.4.2", "--from", "client", "--testbed", run_id, "-n",
               "--suite", "conformance", "-t", "6", "-o", str(host))  # fmt: skip
    finally:
        mbtest(cache, "topo", "down", run_id)
    # (Linux 6.1 and this host's kernel agree; answers wait 6 s: a guest under emulation
    # on a loaded machine once took longer than the default 2 s to answer one probe)
    assert verdicts(guest) == verdicts(host)
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


def cells(folder) -> dict:
    lines = (folder / "results.jsonl").read_text().splitlines()
    return {json.loads(x)["scenario"]["name"]: json.loads(x) for x in lines}


def test_cells_on_linux_6_1_give_the_hosts_verdicts_with_counters_from_the_guest(cache, tmp_path):
    """A baseline and a fallback cell on 6.1 (one VM, warm for the second) and on the
    host: the same verdicts and facts; the guest's counters start afresh in each cell."""
    before = set(netns.listed())
    out = tmp_path / "m"
    chosen = ["--cell", "baseline", "--cell", "kernel-optstrip-syn", "--ip", "4"]
    kernels_ = ["--kernel", VERSION, "--kernel", "host"]
    run = mbtest(cache, "matrix", *chosen, *kernels_, "-j", "1", "-o", str(out))
    assert run.returncode == 0, run.stderr
    assert gone(cache, before), guest_processes(cache)
    results = cells(out)
    assert sorted(results) == sorted(["baseline", "kernel-optstrip-syn", "baseline@6.1",
                                      "kernel-optstrip-syn@6.1"])  # fmt: skip
    for name in ("baseline", "kernel-optstrip-syn"):
        host, guest = results[name], results[f"{name}@6.1"]
        assert guest["verdict"] == host["verdict"] == "as-expected"
        assert {k: f["value"] for k, f in guest["facts"].items()} == {
            k: f["value"] for k, f in host["facts"].items()
        }
        assert guest["kernel"].startswith("6.1.0-") and host["kernel"] == os.uname().release
        validate(guest, "cell")
    docs = {n: json.loads((out / results[n]["dir"] / "run.json").read_text()) for n in results}
    for name in ("baseline@6.1", "kernel-optstrip-syn@6.1"):
        validate(docs[name], "run")
        assert docs[name]["kernel"].startswith("6.1.0-")
        assert docs[name]["counters"]["client"]["MPCapableSYNTX"] == 1  # (a fresh namespace)
    assert docs["baseline@6.1"]["guest"]["vm"] == "cold"
    assert docs["kernel-optstrip-syn@6.1"]["guest"]["vm"] == "warm"  # (the same VM again)
    assert "MPCapableSYNRX" in docs["baseline@6.1"]["counters"]["server"]
    assert "MPCapableSYNRX" not in docs["kernel-optstrip-syn@6.1"]["counters"]["server"]
    assert set(docs["baseline@6.1"]["captures"]) >= {"client.pcap", "server.pcap"}
    assert (out / results["baseline@6.1"]["dir"] / "server.pcap").stat().st_size > 1000
    report = (out / "report.html").read_text()
    assert "0 of 2 cells differ between kernels" in report and "6.1.0-" in report


def in_guest_job() -> bool:
    """Whether a guest is running a cell's job (its exchange folder holds one)."""
    return any(os.path.exists(p) for p in glob.glob("/run/mbtest/*/vm/exchange/*.running"))


def start_matrix_on_6_1(cache, out):
    env = dict(os.environ, MBTEST_KERNEL_CACHE=str(cache))
    argv = [sys.executable, "-m", "mbtest.cli", "matrix", "--cell", "baseline", "--ip", "4",
            "--kernel", VERSION, "-o", str(out)]  # fmt: skip
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, start_new_session=True)  # fmt: skip
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and not in_guest_job():
        time.sleep(0.05)
    assert in_guest_job(), "the guest never took the cell"
    return proc


def test_a_matrix_on_another_kernel_stopped_by_sigterm_mid_cell_leaves_nothing(cache, tmp_path):
    before = set(netns.listed())
    proc = start_matrix_on_6_1(cache, tmp_path / "m")
    os.killpg(proc.pid, signal.SIGTERM)
    _, stderr = proc.communicate(timeout=90)
    assert proc.returncode == 143, stderr
    assert gone(cache, before), guest_processes(cache)
    assert not glob.glob("/run/mbtest/*/vm")
    assert cells(tmp_path / "m")["baseline@6.1"]["verdict"] == "not-run"


def test_a_killed_matrix_on_another_kernel_is_removed_by_cleanup(cache, tmp_path):
    before = set(netns.listed())
    proc = start_matrix_on_6_1(cache, tmp_path / "m")
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(10)
    cleaned = mbtest(cache, "cleanup")
    assert cleaned.returncode == 0, cleaned.stderr
    assert gone(cache, before), guest_processes(cache)
    assert not glob.glob("/run/mbtest/*/vm")


def test_a_guest_that_does_not_boot_is_an_error_cell_naming_its_console(cache, tmp_path):
    """A damaged initramfs: the guest's kernel panics, and the cell says so in one line."""
    broken = tmp_path / "cache"
    entry = next(p for p in cache.iterdir() if (p / "kernel.json").is_file())
    shutil.copytree(entry, broken / entry.name)
    (broken / entry.name / "initramfs").write_bytes(b"not an archive" * 10)
    before = set(netns.listed())
    run = mbtest(broken, "run", "--cell", "baseline", "--kernel", VERSION, "-o",
                 str(tmp_path / "out"), "--json")  # fmt: skip
    assert run.returncode == 3, run.stderr
    result = json.loads(run.stdout)
    assert result["verdict"] == "error"
    assert "did not" in result["why"][0] or "stopped" in result["why"][0]
    assert "console:" in result["why"][0] and "panic" in result["why"][0].lower()
    assert gone(broken, before), guest_processes(broken)
