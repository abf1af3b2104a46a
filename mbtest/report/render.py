"""One self-contained HTML report from matrix results: inline CSS and SVG, no scripts and
nothing fetched from the network; every string from the network or the user is escaped by
the template engine (autoescaping), so a host name or a payload can never become markup."""

from __future__ import annotations

import contextlib
import json
import os
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import jinja2
from markupsafe import Markup

from mbtest import __version__, jsondoc
from mbtest.errors import MbtestError
from mbtest.jsondoc import is_schema
from mbtest.report import campaign
from mbtest.report.ladder import ladder_svg

VERDICTS = (
    "as-expected",
    "permitted-variant",
    "deviates",
    "flaky",
    "inconclusive",
    "error",
    "not-run",
)
TEMPLATE = "report.html.j2"  # in mbtest/report/templates/, shipped as package data
PROBE_TEMPLATE = "probe.html.j2"  # a probe document's sections, one document per call


def load_results(paths: list[str]) -> list[tuple[str, dict[str, Any]]]:
    """(directory of the results file, cell) for every matrix cell of the files given."""
    return load_all(paths)[0]


def load_all(paths: list[str]) -> tuple[list[tuple[str, dict[str, Any]]], list[dict[str, Any]]]:
    """Matrix cells (results.jsonl files or their directories) and probe documents (JSON);
    a campaign's targets are in ``load`` only."""
    loaded = load(paths)
    return loaded.cells, loaded.probes


@dataclass
class Loaded:
    cells: list[tuple[str, dict[str, Any]]]  # (directory of the results file, cell)
    probes: list[dict[str, Any]]  # probe documents of their own (probe -o, probe --json)
    campaign: campaign.Collector  # the lines of campaign files (probe --targets -o)
    campaign_files: list[str]


def load(paths: list[str]) -> Loaded:
    """Everything the files given hold. A campaign file is read line by line into rows, and
    a line of it that is no usable result is reported there rather than stopping the
    report: one damaged line (a run killed while writing) must not hide 10,000 targets."""
    cells: list[tuple[str, dict[str, Any]]] = []
    probes: list[dict[str, Any]] = []
    collector = campaign.Collector()
    files: list[str] = []
    for path in paths:
        if os.path.isdir(path):  # a matrix's folder, or a single run's (mbtest run)
            lines_file, cell_file = (os.path.join(path, n) for n in ("results.jsonl", "cell.json"))
            if not os.path.exists(lines_file) and not os.path.exists(cell_file):
                raise MbtestError(f"{path} holds no results (results.jsonl or cell.json)")
            path = lines_file if os.path.exists(lines_file) else cell_file
        if not os.path.exists(path):
            raise MbtestError(f"{path}: no such results file")
        if not os.path.isfile(path):
            raise MbtestError(f"{path} is not a regular file (a pipe or a device)")
        try:
            with open(path) as f:
                text = f.read()
        except (OSError, UnicodeDecodeError) as e:
            raise MbtestError(f"{path} cannot be read as text: {e}") from None
        document = _probe_document(text)
        if document is not None:
            if _in_campaign(document):  # a campaign file of one target
                collector.add(document)
                files.append(path)
            else:
                probes.append(document)
            continue
        whole = _whole_cell(text)
        if whole is not None:  # a single run's cell.json: its evidence is beside it
            folder = os.path.dirname(os.path.abspath(path))
            whole["dir"] = os.path.basename(folder)
            cells.append((os.path.dirname(folder), whole))
            continue
        bad: list[tuple[str, str, Any]] = []  # (where, why, campaign part) of unusable lines
        in_campaign = False
        for number, line in _lines(text):
            where = f"{path} line {number}"
            try:
                value = json.loads(line)
            except (ValueError, RecursionError):
                bad.append((where, "is not JSON", None))
                continue
            if _in_campaign(value):
                in_campaign = True
                problem = (
                    None if is_schema(value.get("schema"), "campaign") else _probe_problem(value)
                )
                if problem:
                    bad.append((where, problem, value.get("campaign")))
                else:
                    collector.add(value)
                continue
            if isinstance(value, dict) and is_schema(value.get("schema"), "probe"):
                problem = _probe_problem(value)  # probe --json: a document a line
                if problem:
                    bad.append((where, problem, None))
                else:
                    probes.append(value)
                continue
            problem = _cell_problem(value)
            if problem:
                bad.append((where, f"is not an mbtest cell result: {problem}", None))
                continue
            cells.append((os.path.dirname(os.path.abspath(path)), value))
        if in_campaign:
            files.append(path)
            for where, why, part in bad:
                collector.add_unreadable(where, why, part)
        elif bad:
            where, why, _ = bad[0]
            raise MbtestError(f"{where} {why}" if why.startswith("is ") else f"{where}: {why}")
    if not cells and not probes and not collector.rows:
        raise MbtestError(f"{', '.join(paths)} holds no cell or probe result: nothing to report")
    return Loaded(cells, probes, collector, files)


def _in_campaign(value: Any) -> bool:
    """A campaign's line: a probe document with its campaign part, or the line of a target
    that could not be probed."""
    if not isinstance(value, dict):
        return False
    schema = value.get("schema")
    return is_schema(schema, "campaign") or (is_schema(schema, "probe") and "campaign" in value)


def _lines(text: str) -> Iterator[tuple[int, str]]:
    """The non-blank lines of a text with their numbers, one at a time (a campaign file
    can be hundreds of megabytes: no second copy of it as a list)."""
    start, number = 0, 0
    while start < len(text):
        end = text.find("\n", start)
        end = len(text) if end < 0 else end
        number += 1
        line = text[start:end]
        if line.strip():
            yield number, line
        start = end + 1


def _unprobed(line: dict[str, Any]) -> dict[str, Any]:
    """A campaign line for a target that could not be probed, as a probe document whose one
    entry says why (so that the report shows it with the others)."""
    part = line.get("campaign") if isinstance(line.get("campaign"), dict) else {}
    where = part.get("target") or f"targets line {part.get('line', '?')}"
    return {
        "schema": "mbtest.probe/2",
        "target": {"name": str(where), "address": "", "port": part.get("port") or 0},
        "source": "",
        "mode": "campaign",
        "max_ttl": 0,
        "tries": 0,
        "timeout": 0,
        "seconds": 0,
        "probes": [
            {
                "name": "campaign",
                "summary": f"outcome: {part.get('outcome', 'error')}",
                "notes": [],
                "error": str(line.get("error", "not probed")),
                "hops": [],
                "first_change": None,
                "destination": None,
            }
        ],
    }


def _whole_cell(text: str) -> dict[str, Any] | None:
    """A cell result written as one indented document (cell.json), or None."""
    if "\n" not in text.strip():
        return None  # a one-line file is read as JSON lines
    try:
        doc = json.loads(text)
    except ValueError:
        return None
    if isinstance(doc, dict) and is_schema(doc.get("schema"), "cell"):
        problem = _cell_problem(doc)
        if problem:
            raise MbtestError(f"a cell result that cannot be used: {problem}")
        return doc
    return None


def _cell_problem(cell: Any) -> str | None:
    """What makes a line unusable as a cell result, or None."""
    if not isinstance(cell, dict):
        return "not an object"
    scenario = cell.get("scenario")
    if not isinstance(scenario, dict) or not isinstance(scenario.get("name"), str):
        return "no scenario with a name"
    if not isinstance(scenario.get("topology", ""), str):
        return "a topology that is not a string"
    if not isinstance(scenario.get("middleboxes", {}), dict):
        return "middleboxes that are not a table"
    if not isinstance(cell.get("verdict"), str):
        return "no verdict"
    if not isinstance(cell.get("why", []), list) or not isinstance(cell.get("facts", {}), dict):
        return "why or facts of the wrong type"
    if not all(isinstance(f, dict) for f in cell.get("facts", {}).values()):
        return "facts of the wrong type"
    if not isinstance(cell.get("captures", []), list):
        return "captures that are not a list"
    return None


def _probe_document(text: str) -> dict[str, Any] | None:
    """A probe result document, or None when the text is something else (JSON lines...)."""
    try:
        doc = json.loads(text)
    except (ValueError, RecursionError):
        return None
    if not isinstance(doc, dict) or not is_schema(doc.get("schema"), "probe"):
        return None
    problem = _probe_problem(doc)
    if problem:
        raise MbtestError(problem)
    return doc


def _probe_problem(doc: dict[str, Any]) -> str | None:
    """What makes a probe document unusable by the report, or None."""
    if not isinstance(doc.get("probes"), list) or not isinstance(doc.get("target"), dict):
        return "a probe result without its target or probes"
    for probe in doc["probes"]:
        if not isinstance(probe, dict) or not isinstance(probe.get("name"), str):
            return "a probe result with a probe that has no name"
        hops = probe.get("hops", [])
        if not isinstance(hops, list) or not all(isinstance(h, dict) for h in hops):
            return f"probe {probe['name']}: its hops are not a list of objects"
        for hop in hops:
            if not isinstance(hop.get("changes", []), list):
                return f"probe {probe['name']}: a hop's changes are not a list"
    return None


def _inside(base: str, name: Any, must_exist: bool = True) -> str | None:
    """The path of a file named by a results document, when it is a relative path that stays
    inside ``base``; None for anything else (absolute paths, '..', URLs such as javascript:)."""
    if not isinstance(name, str) or not name or "\0" in name:
        return None
    if os.path.isabs(name) or ":" in name.split("/")[0] or ".." in name.split("/"):
        return None
    path = os.path.realpath(os.path.join(base, name))
    root = os.path.realpath(base)
    inside = path.startswith(root + os.sep)
    return path if inside and (os.path.isfile(path) or not must_exist) else None


def _read_json(path: str | None) -> dict[str, Any]:
    """A JSON document of the evidence, or {} when it is missing or unreadable."""
    if path is None:
        return {}
    try:
        with open(path) as f:
            doc = json.load(f)
    except (OSError, ValueError):
        return {}
    return doc if isinstance(doc, dict) else {}


def _log_lines(path: str | None, limit: int = 30) -> list[dict[str, Any]]:
    out: list[dict[str, Any]] = []
    if path is None:
        return out
    with contextlib.suppress(OSError), open(path, errors="replace") as f:
        for line in f:
            with contextlib.suppress(ValueError):
                entry = json.loads(line)
                if isinstance(entry, dict):
                    out.append(entry)
            if len(out) >= limit:
                break
    return out


def _cell_view(base: str, cell: dict[str, Any], out_dir: str) -> dict[str, Any]:
    scenario = cell["scenario"]
    cell_dir_name = cell.get("dir")
    cell_dir = None
    plain = isinstance(cell_dir_name, str) and cell_dir_name not in ("", ".", "..")
    if plain and "/" not in cell_dir_name and os.path.isdir(os.path.join(base, cell_dir_name)):
        cell_dir = os.path.join(base, cell_dir_name)
    run = _read_json(_inside(cell_dir, "run.json")) if cell_dir else {}
    timelines = run.get("timelines", {}) if isinstance(run.get("timelines"), dict) else {}
    ladder = ladder_svg(timelines.get("client.pcap", {}), timelines.get("server.pcap", {}))
    log: list[dict[str, Any]] = []
    boxes = run.get("middleboxes", {}) if isinstance(run.get("middleboxes"), dict) else {}
    for mb in boxes.values():
        if isinstance(mb, dict) and cell_dir:
            log += _log_lines(_inside(cell_dir, mb.get("log")))
    pcaps = []
    for name in cell.get("captures", []) if cell_dir else []:
        path = _inside(cell_dir, name, must_exist=False)
        if path is not None:  # links only to files inside the results folder, relative
            pcaps.append(quote(os.path.relpath(path, os.path.realpath(out_dir))))
    spec = ", ".join(scenario.get("middleboxes", {}).values()) or "none"
    names = scenario.get("behaviours") or sorted(
        {s.split(":")[0] for s in scenario.get("middleboxes", {}).values()}
    )
    return {
        "id": f"cell-{cell.get('dir') or scenario['name']}",
        "name": scenario["name"],
        "behaviour": ", ".join(names) or "none",
        "spec": spec,
        "variant": _variant(scenario),
        "verdict": cell["verdict"],
        "why": cell.get("why", []),
        "expected": cell.get("expected", {}),
        "outcome": cell.get("outcome") if isinstance(cell.get("outcome"), dict) else None,
        "stability": cell.get("stability") if isinstance(cell.get("stability"), dict) else {},
        "runs": [r for r in cell.get("runs", []) if isinstance(r, dict)],
        "references": [r for r in cell.get("references", []) if isinstance(r, dict)],
        "stall": (cell.get("facts", {}).get("stall") or {}).get("value"),
        "facts": cell.get("facts", {}),
        "label": _short_label(cell),
        "log": log,
        "ladder": Markup(ladder),  # built from escaped text only (ladder.py escapes labels)
        "pcaps": pcaps,
        "scenario": scenario,
        "counters": run.get("counters", {}),
        "sockets": run.get("sockets", {}),
        "seconds": cell.get("seconds"),
        "nodes": _nodes(cell),
        "kernel": scenario["name"].partition("@")[2] or "host",
        "release": str(run.get("kernel") or ""),
        "guest": run.get("guest") if isinstance(run.get("guest"), dict) else None,
    }


def across_kernels(cells: list[dict[str, Any]]) -> dict[str, Any] | None:
    """The cells run on several kernels side by side (None when one kernel ran them all):
    per cell, each kernel's verdict and the facts whose values differ between kernels (a
    fix or a regression); each kernel with the exact release its cells ran."""
    kernels: list[str] = []
    releases: dict[str, set[str]] = {}
    rows: dict[str, dict[str, dict[str, Any]]] = {}
    for c in cells:
        kernel = c["kernel"]
        if kernel not in kernels:
            kernels.append(kernel)
        if c["release"]:
            releases.setdefault(kernel, set()).add(c["release"])
        rows.setdefault(c["name"].partition("@")[0], {})[kernel] = c
    if len(kernels) < 2:
        return None
    table = []
    for name, per in rows.items():
        present = [per[k] for k in kernels if k in per]
        verdicts = {c["verdict"] for c in present}
        facts = sorted({f for c in present for f in c["facts"]})
        differing = []
        for fact in facts:
            values = [(c["facts"].get(fact) or {}).get("value") for c in present]
            if any(v != values[0] for v in values[1:]):
                shown = {k: jsondoc.plain((per[k]["facts"].get(fact) or {}).get("value"))
                         for k in kernels if k in per}  # fmt: skip
                differing.append({"fact": fact, "values": shown})
        table.append({
            "name": name,
            "cells": [per.get(k) for k in kernels],
            "verdicts_differ": len(verdicts) > 1,
            "facts": differing,
            "differs": len(verdicts) > 1 or bool(differing),
        })  # fmt: skip
    return {
        "kernels": [
            {"label": k, "release": ", ".join(sorted(releases.get(k, ()))) or "not recorded"}
            for k in kernels
        ],
        "rows": table,
        "differing": sum(1 for row in table if row["differs"]),
    }


def _nodes(cell: dict[str, Any]) -> dict[str, Any]:
    """The MPTCP sysctls each endpoint's namespace ran with (recorded by the run)."""
    env = cell.get("environment")
    nodes = env.get("nodes") if isinstance(env, dict) else None
    if not isinstance(nodes, dict):
        return {}
    return {str(k): v for k, v in nodes.items() if isinstance(v, dict)}


def _variant(scenario: dict[str, Any]) -> str:
    """The grid column: topology and checksums (the slot names the placement)."""
    csum = "on" if scenario.get("checksums") else "off"
    return f"{scenario['topology']} · checksums {csum}"


def _short_label(cell: dict[str, Any]) -> str:
    facts = {k: v.get("value") for k, v in cell.get("facts", {}).items()}
    if not facts.get("connected", True):
        return "connect failed"
    if cell.get("verdict") == "flaky":
        return "flaky"
    if facts.get("stalled"):
        return "stalled"
    if facts.get("fallback_at_handshake"):
        return "TCP (handshake fallback)"
    if facts.get("fallback_later"):
        return "fell back later"
    if facts.get("join_reset_reasons"):
        return "join reset"
    if "mptcp_negotiated" in facts:
        return "MPTCP"
    return cell["verdict"]


def run_descriptions(
    loaded: list[tuple[str, dict[str, Any]]], probe_docs: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """What each run behind the report was measured on, from its own documents (matrix.json
    beside each results file, a shard each; the probe documents), never from the machine
    that renders the report."""
    runs = []
    for base in dict.fromkeys(b for b, _ in loaded):
        meta = _read_json(os.path.join(base, "matrix.json"))
        if not meta:
            cells = [c for b, c in loaded if b == base]
            env = next(
                (c["environment"] for c in cells if isinstance(c.get("environment"), dict)), {}
            )
            meta = {"environment": env}
        runs.append(_description(os.path.basename(base), meta))
    for doc in probe_docs:
        runs.append(_description(f"probe {doc['target'].get('name')}", doc))
    return runs


def _description(label: str, meta: dict[str, Any]) -> dict[str, Any]:
    env = meta.get("environment") if isinstance(meta.get("environment"), dict) else {}
    shown: dict[str, str] = {}
    if meta.get("shard") and meta.get("shard") != "1/1":
        part, whole = len(meta.get("cells", [])), len(meta.get("selection", []))
        shown["shard"] = f"{meta['shard']} ({part} of {whole} cells)"
    if meta.get("complete") is False:
        shown["complete"] = "no: stopped before every cell ran (mbtest matrix --resume)"
    if env.get("kernel") or meta.get("kernel"):
        shown["kernel"] = str(env.get("kernel") or meta.get("kernel"))
    if isinstance(env.get("mptcp_sysctls"), dict):
        shown["host mptcp sysctls"] = jsondoc.plain({k: v for k, v in env["mptcp_sysctls"].items()})
    if isinstance(env.get("versions"), dict):
        shown["versions"] = ", ".join(f"{k} {v}" for k, v in env["versions"].items())
    if not env:
        shown["environment"] = "not recorded (a result written before schema version 2)"
    return {
        "label": label,
        "command": meta.get("command") or env.get("command"),
        "started_text": _when(meta.get("started")),
        "seconds": meta.get("seconds"),
        "shown": shown,
    }


def render(paths: list[str], out_file: str) -> str:
    """Write the report and return its path: the cells in grid order (their folders are
    numbered by position, the same in every shard), each run's own description, a
    campaign as a summary and a row per target (its interesting targets in full, a bounded
    number of them)."""
    data = load(paths)
    loaded, probe_docs = data.cells, data.probes
    loaded.sort(key=lambda item: _position(item[1]))
    out_dir = os.path.dirname(os.path.abspath(out_file))
    cells = [_cell_view(base, cell, out_dir) for base, cell in loaded]
    counts = Counter(c["verdict"] for c in cells)
    probes = [p for doc in probe_docs for p in doc["probes"]]
    judging = [p["conformance"] for p in probes if isinstance(p.get("conformance"), dict)]
    path_probes = [p for p in probes if not p.get("conformance")]
    changed = sum(1 for p in path_probes if p.get("first_change") or p.get("setup_failed"))
    judged = Counter(str(j.get("verdict")) for j in judging)
    doubtful = judged["deviates"] + judged["no-answer"] + judged["inconclusive"]
    env = jinja2.Environment(
        loader=jinja2.PackageLoader("mbtest.report", "templates"), autoescape=True
    )
    env.filters["show"] = jsondoc.plain
    section = env.get_template(PROBE_TEMPLATE).module.probe_document  # type: ignore[attr-defined]
    camp = _campaign_view(data, section) if data.campaign.rows else None
    found = Counter(camp["summary"]["counts"]) if camp else Counter()
    failed = counts["error"] or any(p.get("error") and not p.get("setup_failed") for p in probes)
    doubted = counts["deviates"] or counts["inconclusive"] or counts["flaky"] or doubtful
    if failed or found["error"] or found[campaign.UNREADABLE]:
        overall = "error"
    elif doubted or changed or found["changed"]:
        overall = "deviates"
    elif found["not-observable"]:  # nothing seen, and part of some path was out of sight
        overall = "inconclusive"
    else:
        overall = "as-expected"
    behaviours = list(dict.fromkeys(c["behaviour"] for c in cells))
    variants = list(dict.fromkeys(c["variant"] for c in cells))
    grid: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for c in cells:
        grid.setdefault((c["behaviour"], c["variant"]), []).append(c)
    runs = run_descriptions(loaded, probe_docs)
    if camp:
        runs.append(camp["run"])
    html = env.get_template(TEMPLATE).render(
        cells=cells,
        counts={v: counts.get(v, 0) for v in VERDICTS},
        overall=overall,
        behaviours=behaviours,
        variants=variants,
        grid=grid,
        verdicts=VERDICTS,
        runs=runs,
        version=__version__,
        probe_docs=probe_docs,
        probe_sections=[_section(section, doc, "probe") for doc in probe_docs],
        probe_counts={"probes": len(probes), "changed": changed, "conformance": dict(judged)},
        camp=camp,
        kernels=across_kernels(cells),
        generated=datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S UTC"),
    )
    with open(out_file, "w") as f:
        f.write(html)
    return out_file


def _campaign_view(data: Loaded, section: Any) -> dict[str, Any]:
    """The campaign part of the page: its summary, its rows in table order, and the full
    sections of the targets kept whole (a link from each one's row)."""
    collector = data.campaign
    kept = collector.kept()
    sections = []
    for row, doc in kept:
        row["anchor"] = f"target-{row['index']}"
        shown = _unprobed(doc) if is_schema(doc.get("schema"), "campaign") else doc
        sections.append((row, _section(section, shown, row["anchor"])))
    summary = campaign.summarise(collector.rows, len(kept))
    summary["counts"] = {o["outcome"]: o["count"] for o in summary["outcomes"]}
    first = collector.first
    shown = {"targets": str(summary["targets"])}
    if first.get("source"):
        shown["probed from"] = first["source"]
    run = {
        "label": f"campaign {', '.join(data.campaign_files)}",
        "command": first.get("command"),
        "started_text": _when(first.get("started")),
        "seconds": None,
        "shown": shown,
    }
    return {
        "summary": summary,
        "rows": campaign.order(collector.rows),
        "sections": sections,
        "files": data.campaign_files,
        "run": run,
        "outcomes": campaign.OUTCOMES,
        "interesting": campaign.INTERESTING,
    }


def _section(macro: Any, doc: dict[str, Any], prefix: str) -> Markup:
    """One probe document's sections; a document whose shape the template cannot follow
    (a file from outside) is said to be so in its place, and the page still renders."""
    try:
        return Markup(macro(doc, prefix))
    except (
        TypeError,
        ValueError,
        AttributeError,
        KeyError,
        IndexError,
        RecursionError,
        jinja2.TemplateError,
    ) as e:
        name = doc.get("target", {}).get("name") if isinstance(doc.get("target"), dict) else None
        why = f"{type(e).__name__}: {e}"[:300]
        return Markup('<p class="why">The document for {} cannot be shown in full: {}</p>').format(
            str(name)[:200], why
        )


def _when(value: Any) -> str | None:
    """A point in time from a document (RFC 3339, or epoch seconds in version 1 files; a
    version 1 probe wrote its own text), shown in UTC."""
    seconds = jsondoc.epoch(value)
    if seconds is None:
        return value if isinstance(value, str) else None
    try:
        return datetime.fromtimestamp(seconds, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    except (OverflowError, ValueError, OSError):  # a number no clock reaches: not a time
        return None


def _position(cell: dict[str, Any]) -> tuple[int, str]:
    """A cell's place in the grid, from its folder's number (000-name), else last."""
    folder = cell.get("dir") if isinstance(cell.get("dir"), str) else ""
    number = folder.split("-", 1)[0]
    return (int(number) if number.isdigit() else 1 << 30, folder)


def render_results(paths: list[str], out_file: str | None = None) -> str:
    """The report of results files, written beside the first one unless ``out_file`` says
    where."""
    first = paths[0] if os.path.isdir(paths[0]) else os.path.dirname(os.path.abspath(paths[0]))
    return render(paths, out_file or os.path.join(first, "report.html"))
