"""JUnit XML from matrix results, so that any CI system (GitHub Actions, GitLab, Jenkins)
shows the matrix as tests: a test case per cell, grouped by behaviour; a deviation, a flaky
or inconclusive cell is a failure carrying the verdict's why, a harness error an error, a
cell that did not run skipped; as-expected and permitted variants pass."""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections import Counter
from typing import Any

from mbtest.report.render import load_all

FAILURES = {"deviates", "flaky", "inconclusive"}


def document(cells: list[dict[str, Any]]) -> ET.ElementTree:
    suites: dict[str, list[dict[str, Any]]] = {}
    for cell in cells:
        scenario = cell["scenario"]
        behaviour = ", ".join(scenario.get("behaviours") or []) or "baseline"
        suites.setdefault(behaviour, []).append(cell)
    root = ET.Element("testsuites", name="mbtest matrix")
    totals: Counter[str] = Counter()
    for behaviour, members in suites.items():
        counts = Counter(_kind(c["verdict"]) for c in members)
        totals.update(counts)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=behaviour,
            tests=str(len(members)),
            failures=str(counts["failure"]),
            errors=str(counts["error"]),
            skipped=str(counts["skipped"]),
            time=f"{sum(_seconds(c) for c in members):.3f}",
        )
        for cell in members:
            suite.append(_case(behaviour, cell))
    root.set("tests", str(len(cells)))
    for kind in ("failure", "error", "skipped"):
        root.set(f"{kind}s" if kind != "skipped" else "skipped", str(totals[kind]))
    ET.indent(root)
    return ET.ElementTree(root)


def _kind(verdict: str) -> str:
    if verdict in FAILURES:
        return "failure"
    if verdict == "error":
        return "error"
    if verdict == "not-run":
        return "skipped"
    return "pass"


def _seconds(cell: dict[str, Any]) -> float:
    value = cell.get("seconds")
    return float(value) if isinstance(value, (int, float)) else 0.0


def _case(behaviour: str, cell: dict[str, Any]) -> ET.Element:
    scenario = cell["scenario"]
    case = ET.Element(
        "testcase",
        classname=f"mbtest.{behaviour}",
        name=scenario["name"],
        time=f"{_seconds(cell):.3f}",
    )
    why = [str(w) for w in cell.get("why", [])]
    verdict = cell["verdict"]
    kind = _kind(verdict)
    if kind in ("failure", "error", "skipped"):
        tag = "skipped" if kind == "skipped" else kind
        element = ET.SubElement(case, tag, message=f"{verdict}: {why[0] if why else ''}"[:500])
        element.set("type", verdict)
        element.text = "\n".join(why)
    outcome = cell.get("outcome") if isinstance(cell.get("outcome"), dict) else None
    said = [f"verdict: {verdict}"]
    if outcome:
        said.append(f"outcome: {outcome.get('name')} ({outcome.get('rfc')})")
    said.append(f"evidence: {cell.get('dir', '')}")
    ET.SubElement(case, "system-out").text = "\n".join(said)
    return case


def write(paths: list[str], out_file: str) -> str:
    """JUnit XML of the results files (or folders) given, merged: shards make one file."""
    loaded, _ = load_all(paths)
    document([cell for _, cell in loaded]).write(out_file, encoding="utf-8", xml_declaration=True)
    return out_file
