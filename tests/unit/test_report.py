"""The HTML report, rendered from evidence recorded from real runs (no root needed)."""

import json
import re
import shutil
from pathlib import Path

from mbtest.report.render import render
from mbtest.scenario import expect, facts
from mbtest.scenario.run import _log

CELLS = Path(__file__).parent.parent / "data" / "cells"
EVIL = '<script>document.title="pwned"</script>'


def results_dir(tmp_path, evil=False):
    """A results directory like the matrix writes, from the recorded cells."""
    lines = []
    for directory in sorted(CELLS.iterdir()):
        shutil.copytree(directory, tmp_path / directory.name)
        doc = json.loads((directory / "run.json").read_text())
        scenario = json.loads((directory / "scenario.json").read_text())
        if evil:
            scenario["name"] += EVIL
        expectation = expect.EXPECTATIONS[scenario["expect"]]
        observed = facts.observe(doc, _log(str(directory), doc))
        decided = expect.verdict(expectation, observed, bool(scenario["middleboxes"]))
        lines.append({
            "schema": "mbtest.cell/1", "scenario": scenario, "dir": directory.name,
            "expected": {"name": expectation.name, "rfc": expectation.rfc,
                         "text": expectation.text},
            "facts": {k: f.to_json() for k, f in observed.items()},
            "captures": ["client.pcap"], **decided,
        })  # fmt: skip
    if evil:
        log = tmp_path / "payload-flip-c2s-csum" / "middlebox-slot.jsonl"
        log.write_text(
            log.read_text() + json.dumps({"flow": EVIL, "field": "payload", "after": EVIL}) + "\n"
        )
    (tmp_path / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines))
    return tmp_path


def test_report_has_header_grid_cells_facts_ladders_and_pcap_links(tmp_path):
    out = render(
        [str(results_dir(tmp_path))], str(tmp_path / "report.html"), {"command": "mbtest matrix"}
    )
    html = Path(out).read_text()
    assert "MPTCP interference report" in html and 'class="overall ov-deviates"' in html
    for count, verdict in ((5, "as-expected"), (1, "deviates"), (1, "inconclusive"), (0, "error")):
        assert f"<b>{count}</b> {verdict}" in html
    assert '<table class="grid" id="grid">' in html and html.count('<details class="cell') == 7
    assert "RFC 8684 §3.7" in html  # the expectation with its section
    assert "client.MPCapableFallbackSYNACK+1" in html  # a fact's evidence
    assert html.count("<svg") >= 5 and 'class="arrow alarm"' in html  # ladders, MP_FAIL/RST marked
    assert 'href="strip-mpc-syn-nop/client.pcap"' in html
    assert "kernel" in html and "pyroute2" in html and "mbtest matrix" in html


def test_report_is_self_contained_and_renders_hostile_text_inert(tmp_path):
    out = render([str(results_dir(tmp_path, evil=True))], str(tmp_path / "report.html"))
    html = Path(out).read_text()
    assert "<script" not in html  # every hostile string was escaped
    assert "&lt;script&gt;document.title=&#34;pwned&#34;&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)=["']?https?:""", html)  # nothing fetched from the network
    assert "<link" not in html and "@import" not in html
    assert "default-src 'none'" in html  # and the browser is told so
