"""The HTML report, rendered from evidence recorded from real runs (no root needed)."""

import json
import re
import shutil
from pathlib import Path

import pytest

from mbtest.errors import MbtestError
from mbtest.experiment.cell import judge
from mbtest.experiment.scenario import from_dict
from mbtest.report.render import render
from mbtest.verdict import expect

CELLS = Path(__file__).parent.parent / "data" / "cells"
EVIL = '<script>document.title="pwned"</script>'


def results_dir(tmp_path, evil=False):
    """A results directory like the matrix writes, from the recorded cells."""
    lines = []
    for directory in sorted(CELLS.iterdir()):
        shutil.copytree(directory, tmp_path / directory.name)
        doc = json.loads((directory / "run.json").read_text())
        scenario = json.loads((directory / "scenario.json").read_text())
        judged = judge(from_dict(dict(scenario)), doc, str(directory))
        if evil:  # a results file someone edited: the report must render it inert
            scenario["name"] += EVIL
        lines.append(
            {
                "schema": "mbtest.cell/1",
                "scenario": scenario,
                "dir": directory.name,
                "expected": expect.EXPECTATIONS[scenario["expect"]].to_json(),
                "captures": ["client.pcap"],
                **judged,
            }
        )
    if evil:
        log = tmp_path / "payload-flip-c2s-csum" / "middlebox-slot.jsonl"
        log.write_text(
            log.read_text() + json.dumps({"flow": EVIL, "field": "payload", "after": EVIL}) + "\n"
        )
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return tmp_path


def test_report_has_header_grid_cells_facts_ladders_and_pcap_links(tmp_path):
    base = results_dir(tmp_path)
    meta = {  # what the matrix writes beside its results: the run's own environment
        "schema": "mbtest.matrix/2",
        "started": "2026-11-30T03:18:22.500000Z",
        "command": "mbtest matrix --ip 4",
        "environment": {
            "kernel": "9.9.9-recorded",
            "mptcp_sysctls": {"checksum_enabled": "0"},
            "versions": {"pyroute2": "0.0-recorded"},
            "command": "mbtest matrix --ip 4",
        },
        "shard": "1/1",
        "complete": True,
    }
    (base / "matrix.json").write_text(json.dumps(meta))
    out = render([str(base)], str(tmp_path / "report.html"))
    html = Path(out).read_text()
    assert "MPTCP interference report" in html and 'class="overall ov-deviates"' in html
    counts = ((5, "as-expected"), (1, "permitted-variant"), (2, "deviates"), (1, "inconclusive"),
              (0, "error"))  # fmt: skip
    for count, verdict in counts:
        assert f"<b>{count}</b> {verdict}" in html
    assert '<table class="grid" id="grid">' in html and html.count('<details class="cell') == 9
    assert "Acceptable outcomes" in html and "&larr; taken" in html  # the variant taken
    assert "Stall diagnosis" in html and "refused locally" in html  # why the flip stalled
    assert "Linux selftests" in html  # what the kernel's own tests expect, beside
    assert "RFC 8684 §3.7" in html  # the expectation with its section
    assert "client.MPCapableFallbackSYNACK+1" in html  # a fact's evidence
    assert html.count("<svg") >= 5 and 'class="arrow alarm"' in html  # ladders, MP_FAIL/RST marked
    assert 'href="strip-mpc-syn-nop/client.pcap"' in html
    # the header describes the run (its kernel and versions), not the rendering machine
    assert "9.9.9-recorded" in html and "pyroute2 0.0-recorded" in html
    assert "mbtest matrix --ip 4" in html and "2026-11-30 03:18:22 UTC" in html
    assert "True" not in html.replace("TrueType", "") and "{&#39;" not in html  # no reprs


def test_report_is_self_contained_and_renders_hostile_text_inert(tmp_path):
    out = render([str(results_dir(tmp_path, evil=True))], str(tmp_path / "report.html"))
    html = Path(out).read_text()
    assert "<script" not in html  # every hostile string was escaped
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)=["']?https?:""", html)  # nothing fetched from the network
    assert "<link" not in html and "@import" not in html
    assert "default-src 'none'" in html  # and the browser is told so


PROBE = Path(__file__).parent.parent / "data" / "probe-strip-nop.json"


def probe_file(tmp_path, evil=False):
    """The recorded probe run (strip-option in the slot at hop 4, hop 2 silent), maybe with
    hostile text where the network or the user could put it."""
    doc = json.loads(PROBE.read_text())
    if evil:
        doc["target"]["name"] = EVIL
        doc["probes"][1]["hops"][5]["name"] = EVIL  # a router's reverse DNS name
        doc["probes"][1]["hops"][5]["changes"][0]["text"] += EVIL
    path = tmp_path / "probe.json"
    path.write_text(json.dumps(doc))
    return path


def test_report_shows_each_probe_hop_by_hop(tmp_path):
    html = Path(render([str(probe_file(tmp_path))], str(tmp_path / "r.html"))).read_text()
    assert 'id="probes"' in html and 'id="grid"' not in html  # no matrix in a probe report
    assert "5 probes, 3 with path changes or no MPTCP" in html
    mp_capable = html.split('id="probe-2-mp_capable"')[1].split("</section>")[0]
    assert "changed at hop 5" in mp_capable
    rows = re.findall(r"<tr[^>]*>.*?</tr>", mp_capable, re.S)
    first = [r for r in rows if 'class="first-change"' in r]
    assert len(first) == 1 and "<td>5</td>" in first[0] and "10.200.4.2" in first[0]
    assert '<li class="first">MP_CAPABLE removed: replaced by 4 NOPs</li>' in first[0]
    assert sum("<li>MP_CAPABLE removed: replaced by 4 NOPs</li>" in r for r in rows) == 4
    assert re.search(r"<td>2</td><td colspan=\"4\" class=\"silent\">silent", mp_capable)
    assert "SYN/ACK without MPTCP options: the target answers in plain TCP" in mp_capable
    assert "MP_CAPABLE v1 flags H" in mp_capable and "IP ID and sequence number + TTL" in mp_capable
    sent = json.loads(PROBE.read_text())["probes"][1]["sent"]["hex"]
    assert sent in mp_capable
    assert "random token" in html.split('id="probe-3-mp_join"')[1].split("</section>")[0]
    dss = html.split('id="probe-4-dss"')[1].split("</section>")[0]
    assert "no MPTCP connection" in dss and "the path strips it" in dss
    assert 'class="overall ov-deviates"' in html


def test_report_mixes_matrix_cells_and_probes_and_keeps_hostile_text_inert(tmp_path):
    paths = [str(results_dir(tmp_path / "m")), str(probe_file(tmp_path, evil=True))]
    html = Path(render(paths, str(tmp_path / "r.html"))).read_text()
    assert 'id="grid"' in html and 'id="probes"' in html
    assert "<script>" not in html and "&lt;script&gt;" in html


def test_a_probe_document_without_probes_is_one_clear_error(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"schema": "mbtest.probe/1", "target": {}}))
    with pytest.raises(MbtestError, match="without its target or probes"):
        render([str(bad)], str(tmp_path / "r.html"))
