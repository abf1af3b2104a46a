"""The report of a campaign (probe --targets -o): a summary, a row per target, full sections
for a bounded number of interesting targets; a page for 10,000 targets stays light and an
odd or damaged line is reported, never a traceback."""

import json
import re
from pathlib import Path

from mbtest.report import campaign
from mbtest.report.render import render

DATA = Path(__file__).parent.parent / "data"
EVIL = '<script>document.title="pwned"</script>'
PART = {"port": 443, "workers": 4, "pps": 100}


def change(field, text, first=True):
    return {"field": field, "text": text, "first": first}


def probe(name, hops=(), dest_ttl=None, **more):
    """A path probe: hops as (ttl, [changes]); the destination reached at ``dest_ttl``."""
    destination = {"reached": dest_ttl is not None, "kind": "SYN/ACK", "ttl": dest_ttl}
    return {
        "name": name,
        "summary": "",
        "notes": [],
        "hops": [
            {"ttl": ttl, "silent": False, "router": f"10.0.{ttl}.1", "changes": changes}
            for ttl, changes in hops
        ],
        "first_change": None,
        "destination": destination,
        **more,
    }


def doc(name, outcome, probes, line, **more):
    return {
        "schema": "mbtest.probe/2",
        "target": {"name": name, "address": name, "port": 443, "ip_version": 4},
        "source": "192.0.2.1",
        "mode": "parallel",
        "max_ttl": 30,
        "timeout": 1.0,
        "tries": 3,
        "started": "2026-11-30T03:18:22.500000Z",
        "seconds": 1.0,
        "command": "mbtest probe --targets hosts.txt -o campaign.jsonl",
        "probes": probes,
        "campaign": {**PART, "target": name, "line": line, "outcome": outcome},
        **more,
    }


def small_campaign():
    """Nine targets, the outcomes, fields and hops of which the tests count by hand."""
    hidden = {
        "last_router_ttl": 7,
        "complete": False,
        "hidden": [{"fields": "TCP options", "to_ttl": 4, "hidden": [5, 7], "text": "..."}],
    }
    return [
        doc("clean-1", "clean", [probe("mp_capable", [(1, []), (2, [])], dest_ttl=3)], 1),
        doc(
            "changed-1",
            "changed",
            [
                probe(
                    "mp_capable",
                    [
                        (2, []),
                        (3, [change("tcp.options", "MP_CAPABLE removed")]),
                        (4, [change("tcp.options", "MP_CAPABLE removed", first=False)]),
                    ],
                    dest_ttl=8,
                ),
                probe("plain_syn", [(5, [change("tcp.seq", "TCP seq +12")])], dest_ttl=8),
            ],
            2,
            path_differs=[{"ttl": 2, "routers": {}, "text": "hop 2 differs"}],
        ),
        doc("clean-2", "clean", [probe("mp_capable", [(1, [])], dest_ttl=2)], 3),
        doc(
            "changed-2",
            "changed",
            [probe("mp_capable", [(3, [change("tcp.options", "MP_CAPABLE removed")])])],
            4,
        ),
        doc("no-mptcp-1", "no-mptcp", [probe("mp_capable", dest_ttl=5)], 5),
        doc(
            "hidden-1",
            "not-observable",
            [probe("mp_capable", [(1, []), (4, [])], dest_ttl=8, observability=hidden)],
            6,
        ),
        {
            "schema": "mbtest.campaign/2",
            "error": "targets line 7: 'a b' names no <host>",
            "probes": [],
            "campaign": {**PART, "target": None, "port": None, "line": 7, "outcome": "error"},
        },
        doc(
            "changed-3",
            "changed",
            [probe("mp_capable", [(6, [change("tcp.options.MSS", "MSS 1460 -> 1200")])], 10)],
            8,
        ),
        doc("unreachable-1", "unreachable", [probe("mp_capable")], 9),
    ]


def write(path, docs):
    path.write_text("".join(json.dumps(d) + "\n" for d in docs))
    return path


def test_summary_counts_outcomes_fields_and_hops():
    summary = campaign.summary_of(small_campaign())
    assert summary["targets"] == 9
    counts = {o["outcome"]: (o["count"], o["percent"]) for o in summary["outcomes"]}
    assert list(counts) == list(campaign.OUTCOMES)  # every outcome, in order, zeros too
    assert counts == {
        "clean": (2, "22.2%"),
        "changed": (3, "33.3%"),
        "not-observable": (1, "11.1%"),
        "no-mptcp": (1, "11.1%"),
        "unreachable": (1, "11.1%"),
        "no-answer": (0, "0.0%"),
        "error": (1, "11.1%"),
    }
    assert summary["workers"] == [4] and summary["pps"] == [100]
    # per target, each field once: changed-1 first shows tcp.options (hop 3) and tcp.seq
    fields = {field: n for field, n, _ in summary["fields"]["rows"]}
    assert fields == {"tcp.options": 2, "tcp.seq": 1, "tcp.options.MSS": 1}
    assert summary["first_ttl"]["rows"] == [(3, 2), (6, 1)]
    # changed-1: hop 3, destination at 8; changed-3: hop 6, at 10; changed-2: not reached
    assert summary["before_dest"]["rows"] == [(4, 1), (5, 1)]
    assert summary["hidden"]["rows"] == [("TCP options", 1, "11.1%")]
    assert summary["ecmp"] == 1 and summary["interesting"] == 5


def test_rows_put_interesting_targets_first_and_keep_the_first_ones_whole():
    collector = campaign.Collector(detailed=2)
    for d in reversed(small_campaign()):  # the changed targets last in the file
        collector.add(d)
    rows = campaign.order(collector.rows)
    assert [r["target"] for r in rows[:5]] == [
        "changed-3", "changed-2", "changed-1", "hidden-1", "targets line 7",
    ]  # fmt: skip
    assert all(r["interesting"] for r in rows[:5]) and not any(r["interesting"] for r in rows[5:])
    first = next(r for r in rows if r["target"] == "changed-1")
    assert (first["ttl"], first["fields"], first["dest_ttl"]) == (3, ["tcp.options"], 8)
    assert first["texts"] == ["MP_CAPABLE removed"]
    hidden = next(r for r in rows if r["target"] == "hidden-1")
    assert hidden["note"] == "hidden: TCP options after hop 4"
    kept = [row["target"] for row, _ in collector.kept()]
    assert kept == ["changed-3", "changed-2"]  # the table's first, not the file's first


def test_campaign_page_has_summary_rows_and_collapsed_sections(tmp_path):
    source = write(tmp_path / "campaign.jsonl", small_campaign())
    html = Path(render([str(source)], str(tmp_path / "r.html"))).read_text()
    assert 'id="campaign"' in html and 'class="overall ov-error"' in html
    assert "campaign of 9 targets: 2 clean, 3 changed, 1 not-observable" in html
    assert "<td>changed</td><td>3</td><td>33.3%</td>" in html
    assert "4 workers, at most 100 packets a second" in html
    assert "<td><code>tcp.options</code></td><td>2</td>" in html
    table = html.split('<table class="targets">')[1].split("</table>")[0]
    rows = re.findall(r"<tr.*?</tr>", table)[1:]
    assert len(rows) == 9 and all('class="mark"' in r for r in rows[:5])
    assert 'href="#target-1">changed-1</a>' in rows[0] and "hop 3: tcp.options" in rows[0]
    assert html.count('<details class="target"') == 5  # every interesting target, collapsed
    assert 'id="target-1-1-mp_capable"' in html  # its probes' sections, ids of their own
    assert "names no &lt;host&gt;" in html and "<host>" not in html
    assert "mbtest probe --targets hosts.txt" in html  # the run described, once
    assert html.count("<dt>command</dt>") == 1


def test_mixed_report_keeps_single_probe_documents_apart(tmp_path):
    single = DATA / "probe-strip-nop.json"
    source = write(tmp_path / "campaign.jsonl", small_campaign())
    html = Path(render([str(single), str(source)], str(tmp_path / "r.html"))).read_text()
    assert 'id="probes"' in html and 'id="probe-2-mp_capable"' in html
    assert "5 probes, 3 with path changes or no MPTCP" in html  # the single document's own
    assert 'id="campaign"' in html and "campaign of 9 targets" in html


def big_campaign(path, count):
    """A campaign of ``count`` targets from the recorded probe run (5 probes, 10 hops; the
    MP_CAPABLE option stripped at hop 5): 10% changed, 5% not-observable, 2% errors."""
    changed = json.loads((DATA / "probe-strip-nop.json").read_text())
    changed["schema"] = "mbtest.probe/2"
    changed["target"]["name"] = "@NAME@"
    clean = json.loads(json.dumps(changed))
    for p in clean["probes"]:
        p["first_change"] = None
        for hop in p["hops"]:
            hop["changes"] = []
    hidden = json.loads(json.dumps(clean))
    hidden["probes"][1]["observability"] = {
        "last_router_ttl": 9,
        "complete": False,
        "hidden": [{"fields": "TCP options", "to_ttl": 6, "hidden": [7, 9], "text": "..."}],
    }
    failed = {"schema": "mbtest.campaign/2", "error": "no route to host @NAME@", "probes": []}
    plans = {"changed": changed, "not-observable": hidden, "error": failed, "clean": clean}
    texts = {}
    for outcome, d in plans.items():
        part = {"target": "@NAME@", "port": 443, "line": 0, "outcome": outcome, "workers": 8}
        texts[outcome] = json.dumps({**d, "campaign": {**part, "pps": 200}})
    with open(path, "w") as f:
        for i in range(count):
            outcome = "changed" if i % 10 == 3 else "not-observable" if i % 20 == 7 else "clean"
            outcome = "error" if i % 50 == 11 else outcome
            f.write(texts[outcome].replace("@NAME@", f"host-{i:05d}.example.net") + "\n")
    return path


def test_a_campaign_of_10000_targets_makes_a_light_page(tmp_path):
    source = big_campaign(tmp_path / "campaign.jsonl", 10_000)
    out = Path(render([str(source)], str(tmp_path / "r.html")))
    size = out.stat().st_size
    html = out.read_text()
    # Measured: 2.3 MB (10,000 rows of about 110 bytes, 200 sections of about 6 kB). The
    # bound allows rows of 300 bytes (a changed target's row, with its change, is about
    # 200; every string in a row is cut to 160 characters) and sections of 10 kB: 5 MB. A
    # full section for every target, as before, made about 57 MB of this campaign.
    assert size < 5_000_000, size
    assert html.count('<details class="target"') == campaign.DETAILED
    assert "<td>changed</td><td>1000</td><td>10.0%</td>" in html
    assert "<td>error</td><td>200</td><td>2.0%</td>" in html
    interesting = 1000 + 500 + 200  # changed, not-observable and error targets
    assert f"{interesting - campaign.DETAILED} left out" in html
    assert "8 workers, at most 200 packets a second" in html
    assert "<td>5</td><td>1000</td>" in html  # the first change at hop 5, for each changed
    assert html.count("host-") >= 10_000  # every target has its row


def test_odd_and_damaged_lines_are_reported_and_the_page_renders(tmp_path):
    good = {**small_campaign()[1], "started": 1e300}  # a time no clock reaches
    odd_shapes = {
        "schema": "mbtest.probe/2",
        "target": {"name": EVIL},
        "campaign": {"target": ["a"], "port": "80", "outcome": 7, "workers": True, "pps": "x"},
        "probes": [
            {
                "name": "p",
                "hops": [
                    {"ttl": "3", "changes": [{"first": True, "field": {"x": 1}}]},
                    {"ttl": 4, "changes": [5, {"first": True}, {"first": 1, "field": "f"}]},
                ],
                "destination": "far",
                "observability": [1],
                "first_change": "yes",
                "server": {"arrived": True, "forward": "x"},  # no 'back': the template trips
                "conformance": {"accepts": [1], "verdict": EVIL},
            }
        ],
        "path_differs": {"a": 1},
    }
    lines = [
        json.dumps(good),
        "not json {",
        "[]",
        json.dumps({"schema": "mbtest.probe/2", "campaign": "x", "probes": "no", "target": 5}),
        json.dumps(odd_shapes),
        "[" * 100_000 + "]" * 100_000,  # deeper than the JSON reader's recursion
        json.dumps({"schema": "mbtest.campaign/2", "campaign": [EVIL], "error": EVIL}),
        json.dumps({"schema": "mbtest.probe/2", "campaign": {"target": EVIL, "outcome": EVIL}}),
        '{"schema": "mbtest.probe/2", "campaign": {"target": "cut-short", "outco',
    ]
    source = tmp_path / "campaign.jsonl"
    source.write_text("\n".join(lines) + "\n")
    html = Path(render([str(source)], str(tmp_path / "r.html"))).read_text()
    assert "<script" not in html and "&lt;script&gt;" in html
    for number in (2, 6, 9):  # where the line is, and why it is not a result
        cells = (f"{source} line {number}", "", "unreadable", "", "", "is not JSON")
        assert "".join(f"<td>{c}</td>" for c in cells) in html
    assert f"{source} line 8: a probe result without its target or probes" in html
    assert "<td>unreadable</td><td>6</td>" in html  # lines 2, 3, 4, 6, 8 and 9
    assert "<td>unknown</td><td>2</td>" in html  # lines 5 and 7: outcomes of no known word
    assert "cannot be shown in full" in html  # the odd probe's section, in its place
    assert html.count('<details class="target"') >= 2
