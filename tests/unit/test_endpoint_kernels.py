"""Endpoints on other kernels, without booting one: which kernel a run's endpoints get
(--kernel, or the topology's nodes), cells named per kernel, the VM's NIC count, a warm
VM's cleanliness, the guest agent's handling of a bad job, and the report's cells side by
side across kernels."""

import copy
import ipaddress
import json
import pickle
import shutil
from pathlib import Path

import pytest

from mbtest.errors import MbtestError
from mbtest.experiment import grid, guestagent, matrix, vmpool
from mbtest.experiment.scenario import Scenario, ScenarioError
from mbtest.mptcp.options import AddAddr
from mbtest.observe.decode import PacketRecord
from mbtest.report.render import across_kernels, render
from mbtest.testbed import endpointvm, topology
from mbtest.testbed.builder import endpoint_kernel
from mbtest.testbed.topology import TopologyError, parse
from mbtest.verdict import facts
from mbtest.verdict.evidence import Evidence
from tests.unit.test_report import results_dir
from tests.unit.test_topology import base


def with_kernels(**kernels):
    data = copy.deepcopy(base())
    for node in data["nodes"]:
        if node["name"] in kernels:
            node["kernel"] = kernels[node["name"]]
    return parse(data)


def test_the_endpoints_kernel_is_the_option_else_the_topologys_and_never_mixed():
    assert endpoint_kernel(with_kernels()) is None  # (the host's)
    assert endpoint_kernel(with_kernels(), "6.1") == "6.1"
    assert endpoint_kernel(with_kernels(client="6.12", server="6.12")) == "6.12"
    assert endpoint_kernel(with_kernels(client="6.12", server="6.12"), "7.3") == "7.3"
    assert endpoint_kernel(with_kernels(client="host", server="host")) is None
    with pytest.raises(MbtestError, match=r"client on host, server on 6\.1\): a run drives"):
        endpoint_kernel(with_kernels(server="6.1"))


@pytest.mark.parametrize(
    "node,value,message",
    [
        ("mb", "6.1", "only the client, the server and backends run in a VM"),
        ("server", "6.1; reboot", "kernel must be a version such as 6.1"),
        ("server", 6.1, "kernel must be a version such as 6.1"),
        ("server", "", "kernel must be a version such as 6.1"),
    ],
)
def test_a_bad_kernel_in_a_topology_is_one_sentence(node, value, message):
    with pytest.raises(TopologyError, match=message):
        with_kernels(**{node: value})


def test_a_cell_on_another_kernel_is_named_for_it_and_resumes_by_that_name(tmp_path):
    cell = Scenario(name="baseline")
    on = cell.on_kernel("6.1")
    assert (on.name, on.kernel) == ("baseline@6.1", "6.1")
    assert on.on_kernel("host").name == "baseline"  # (back: the plain name)
    assert on.to_json()["kernel"] == "6.1"
    with pytest.raises(ScenarioError, match=r"kernel = '6\.1 rm' is not allowed"):
        Scenario(name="x", kernel="6.1 rm")
    full = grid.default_grid()
    chosen = [c.on_kernel(k) for k in ("6.1", "host") for c in full[:2]]
    meta = {"schema": "mbtest.matrix/2", "selection": [c.name for c in chosen], "jobs": 1}
    (tmp_path / "matrix.json").write_text(json.dumps(meta))
    plan, _ = matrix.resume(str(tmp_path), full)
    assert [(c.name, c.kernel) for c in plan.selection] == [(c.name, c.kernel) for c in chosen]


def test_a_vm_gets_a_nic_per_link_of_its_endpoints():
    assert vmpool.nics_needed("single-path", {}) == 2
    dual = topology.load("dual-path", {})
    ends = {"client", "server"}
    links = sum(1 for link in dual.links if {link.a.node, link.b.node} & ends)
    assert vmpool.nics_needed("dual-path", {}) == links > 2


def test_a_vm_is_reused_only_when_clean(tmp_path, monkeypatch):
    guest = endpointvm.EndpointVM.__new__(endpointvm.EndpointVM)
    guest.guest, guest.state, guest.exchange = None, tmp_path, tmp_path / "exchange"
    guest.ns, guest.nics = "mbtest-no-such-namespace", 2
    guest.exchange.mkdir()
    assert not guest.clean()  # (its namespace, and so QEMU and its taps, are gone)
    home = {"lo", "vm0", "vm1"}
    monkeypatch.setattr(endpointvm.EndpointVM, "running", lambda self: True)
    monkeypatch.setattr(endpointvm.links, "in_namespace", lambda ns, fn: home)
    assert guest.clean()
    for leftover in ("dirty", "exchange/a.job", "exchange/a.running"):
        (tmp_path / leftover).write_text("")
        assert not guest.clean(), leftover
        (tmp_path / leftover).unlink()
    home.discard("vm1")  # (a tap that went with a cell's namespace)
    assert not guest.clean()
    assert endpointvm.mac(0) != endpointvm.mac(1) and endpointvm.mac(300).endswith("01:2c")


def test_the_guest_agent_answers_a_bad_job_with_its_reason_and_goes_on(tmp_path):
    (tmp_path / "a.job").write_bytes(pickle.dumps({"kind": "reboot", "folder": "a"}))
    guestagent.take(tmp_path, tmp_path / "a.job")
    result = pickle.loads((tmp_path / "a.result").read_bytes())
    assert result == {"ok": False, "error": "unknown job 'reboot'"}
    assert not list(tmp_path.glob("*.running")) and not list(tmp_path.glob("*.job"))
    (tmp_path / "b.job").write_bytes(b"not a pickle")
    guestagent.take(tmp_path, tmp_path / "b.job")
    said = pickle.loads((tmp_path / "b.result").read_bytes())
    assert not said["ok"] and said["error"].startswith("UnpicklingError")


def cell(name, verdict, facts, release):
    return {"name": name, "verdict": verdict, "id": f"cell-{name}", "label": verdict,
            "kernel": name.partition("@")[2] or "host", "release": release,
            "facts": {k: {"value": v} for k, v in facts.items()}}  # fmt: skip


def test_cells_on_several_kernels_are_side_by_side_and_differences_marked():
    cells = [
        cell("a", "as-expected", {"stalled": False}, "6.18.4"),
        cell("b", "deviates", {"stalled": True, "mp_fail_sent": 1}, "6.18.4"),
        cell("a@6.1", "as-expected", {"stalled": False}, "6.1.0-50-cloud-amd64"),
        cell("b@6.1", "deviates", {"stalled": True, "mp_fail_sent": 0}, "6.1.0-50-cloud-amd64"),
    ]
    view = across_kernels(cells)
    assert view["kernels"] == [
        {"label": "host", "release": "6.18.4"},
        {"label": "6.1", "release": "6.1.0-50-cloud-amd64"},
    ]
    rows = {row["name"]: row for row in view["rows"]}
    assert not rows["a"]["differs"] and view["differing"] == 1
    assert rows["b"]["facts"] == [{"fact": "mp_fail_sent", "values": {"host": "1", "6.1": "0"}}]
    assert not rows["b"]["verdicts_differ"]
    assert across_kernels(cells[:2]) is None  # (one kernel: nothing to compare)


def test_the_report_shows_recorded_cells_across_kernels(tmp_path):
    folder = results_dir(tmp_path / "r")
    lines = [json.loads(x) for x in (folder / "results.jsonl").read_text().splitlines()]
    for line in list(lines):  # the same cells "on 6.1", one with another verdict
        other = copy.deepcopy(line)
        other["scenario"]["name"] += "@6.1"
        other["dir"] += "@6.1"
        shutil.copytree(folder / line["dir"], folder / other["dir"])
        if line["scenario"]["name"] == "baseline":
            other["verdict"] = "deviates"
        lines.append(other)
    (folder / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    with open(render([str(folder)], str(tmp_path / "r.html"))) as f:
        html = f.read()
    assert "<h2>Across kernels</h2>" in html
    assert f"1 of {len(lines) // 2} cells differ between kernels" in html
    assert '<tr class="mark"><td>baseline</td>' in html


def test_a_counter_an_older_kernel_lacks_is_counted_in_its_capture_or_said_unknown():
    """Linux 6.1 has no AddAddrTx, DssFallback or MPCapableDataFallback: the ADD_ADDR the
    server sent is counted in its capture, the later fallback read from its sockets, and
    neither reads as zero (the recorded add-addr-stripped run, as if from 6.1)."""
    folder = Path(__file__).parent.parent / "data" / "cells" / "add-addr-stripped"
    doc = json.loads((folder / "run.json").read_text())
    lacking = {"AddAddrTx", "EchoAddTx", "MPJoinSynTx", "DssFallback", "MPCapableDataFallback"}
    doc["counters"] = {
        side: {k: v for k, v in values.items() if k not in lacking}
        for side, values in doc["counters"].items()
    }
    doc["counters_known"] = {side: ["MPCapableSYNTX", "AddAddr"] for side in doc["counters"]}
    evidence = Evidence(doc, [])
    announce = AddAddr(ipaddress.ip_address("10.3.6.2"), 1, hmac=7)
    sent = PacketRecord(5, 0.1, ("10.3.4.2", 18080), ("10.1.1.1", 4000), "s>c", "A", 1, 1, 0,
                        [announce])  # fmt: skip
    evidence._records = {"server.pcap": [sent], "client.pcap": []}
    observed = facts.observe(evidence)
    assert observed["add_addr_sent"].value == 1
    assert "server.AddAddrTx+1 (counted in its capture)" in observed["add_addr_sent"].evidence
    assert observed["add_addr_echoed"].value == 0
    assert "no such counter on that kernel, none in its capture" in (
        observed["add_addr_echoed"].evidence
    )
    assert observed["fallback_later"].value is True  # (its sockets say so)
    said = observed["fallback_later"].evidence
    assert "not counted by that kernel" in said and "fell back to TCP after the handshake" in said
    doc.pop("counters_known")  # a run that did not record them: every counter is trusted
    assert facts.observe(Evidence(doc, []))["add_addr_sent"].value == 0
