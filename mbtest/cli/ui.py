"""rich rendering of results for the terminal."""

from __future__ import annotations

import sys
from collections.abc import Iterable
from typing import TextIO

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mbtest.jsondoc import plain
from mbtest.mptcp.fields import short
from mbtest.observe.decode import PacketRecord


def print_decoded(records: Iterable[PacketRecord], title: str, out: TextIO | None = None) -> int:
    """Every packet as it is read (constant memory): a line with its number, time, direction,
    flags and flow, then one line per MPTCP option, in the words the probe uses; readable
    at 80 columns. Returns the number of packets shown."""
    out = out or sys.stdout
    bad = "\x1b[31m%s\x1b[0m" if out.isatty() else "%s"
    lines = [f"{'#':>6} {'time':>10} dir flags flow / MPTCP options"]
    add = lines.append
    indent = " " * 23
    start = None
    count = 0
    flows: dict[tuple, str] = {}  # a capture holds few flows: each is spelled once
    for r in records:
        count += 1
        start = r.time if start is None else start
        flow = flows.get((r.src, r.dst))
        if flow is None:
            if len(flows) >= 4096:
                flows.clear()
            flow = flows[r.src, r.dst] = _plain(r.flow) if r.src != ("?", 0) else "?"
        add(f"{r.frame:>6} {r.time - start:>10.6f} {r.direction:3} {r.tcp_flags:5} {flow}")
        for option in r.options:
            add(indent + short(option))
        for error in r.errors:
            add(indent + bad % f"malformed: {_plain(error)}")
        if len(lines) >= 2048:  # written in batches: fewer writes, memory still bounded
            out.write("\n".join(lines) + "\n")
            lines.clear()
    add(f"{count} packets in {_plain(title)}")
    out.write("\n".join(lines) + "\n")
    return count


def _plain(text: str) -> str:
    """Text from a file, with control characters shown rather than obeyed."""
    text = str(text)
    if text.isprintable():  # (nearly always: checked at C speed)
        return text
    return "".join(c if c.isprintable() else f"\\x{ord(c):02x}" for c in text)


def print_selfcheck(doc: dict, out_dir: str, console: Console | None = None) -> None:
    """The self-check's verdict: options seen, crypto checks, counters, data integrity."""
    console = console or Console()
    table = Table(
        title=Text(
            f"MPTCP self-check (kernel {doc['kernel']}, IPv{doc['ip_version']}, "
            f"checksums {'on' if doc['checksums'] else 'off'})"
        )
    )
    table.add_column("side")
    table.add_column("MPTCP options decoded")
    table.add_column("crypto recomputed = sent")
    table.add_column("MPTcpExt counters")
    for side, info in doc["sides"].items():
        options = ", ".join(f"{k}×{v}" for k, v in sorted(info["options"].items()))
        checks = ", ".join(
            f"{k} {v['passed']}/{v['passed'] + v['failed']}" for k, v in info["checks"].items()
        )
        counters = ", ".join(f"{k}+{v}" for k, v in sorted(info["counters"].items()))
        table.add_row(Text(side), Text(options), Text(checks), Text(counters))
    console.print(table)
    intact = " ".join(
        f"{d}: {'intact' if ok else 'CHANGED'}" for d, ok in doc["data_intact"].items()
    )
    console.print(Text(f"data {intact}"))
    verdict = Text("OK", style="bold green") if doc["ok"] else Text("FAILED", style="bold red")
    console.print(Text("result: ") + verdict + Text(f" ({doc['seconds']} s)"))
    console.print(Text(f"results in {out_dir}/ (selfcheck.json, client.pcap, server.pcap)"))


def print_run(doc: dict, out_dir: str, console: Console | None = None) -> None:
    """A testbed run: connection, subflows, transfer per direction, counters."""
    console = console or Console()
    console.print(
        Text(
            f"{doc['topology']['name']} (run {doc['run_id']}, IPv{doc['config']['ip_version']}, "
            f"checksums {'on' if doc['config']['checksums'] else 'off'})",
            style="bold",
        )
    )
    if not doc.get("connect", {}).get("ok"):
        console.print(Text(f"connect failed: {doc.get('connect', {}).get('error')}", style="red"))
    for side, report in doc.get("sockets", {}).items():
        kind = "MPTCP" if report["mptcp"] else "plain TCP (fell back)"
        subflows = "; ".join(
            f"{s['local']} > {s['remote']} {s['state']}" for s in report["subflows"]
        )
        console.print(Text(f"{side}: {kind}, {len(report['subflows'])} subflow(s) {subflows}"))
    transfer = doc.get("transfer")
    if transfer:
        for stream in transfer["streams"]:
            if stream["requested"]:
                state = (
                    "intact"
                    if stream["intact"]
                    else ("CHANGED" if stream["changed"] else "INCOMPLETE")
                )
                console.print(
                    Text(
                        f"{stream['direction']}: {stream['received']}/{stream['requested']} bytes "
                        f"{state}" + (f" ({stream['error']})" if stream["error"] else "")
                    )
                )
        if transfer["stalled"]:
            console.print(
                Text(f"stalled: no progress for {transfer['stall_after']} s", style="red")
            )
    for side, deltas in doc.get("counters", {}).items():
        console.print(
            Text(f"{side} MPTcpExt: " + ", ".join(f"{k}+{v}" for k, v in sorted(deltas.items())))
        )
    console.print(Text(f"results in {out_dir}/ (run.json and captures)"))


VERDICT_STYLE = {
    "as-expected": "green",
    "permitted-variant": "cyan",
    "deviates": "red",
    "flaky": "red",
    "inconclusive": "yellow",
    "error": "magenta",
    "not-run": "dim",
}


def print_cell(result: dict, out_dir: str, console: Console | None = None) -> None:
    """One scenario's verdict, the expectation, and the facts with their evidence."""
    console = console or Console()
    verdict = result["verdict"]
    console.print(
        Text(f"{result['scenario']['name']}: ")
        + Text(verdict, style=f"bold {VERDICT_STYLE[verdict]}")
    )
    expected = result.get("expected", {})
    console.print(Text(f"expected ({expected.get('rfc', '')}): {expected.get('text', '')}"))
    for other in expected.get("outcomes", [])[1:]:
        console.print(Text(f"  also permitted ({other['rfc']}): {other['name']}: {other['text']}"))
    outcome = result.get("outcome")
    if outcome and outcome.get("name") != "main":
        console.print(Text(f"outcome: {outcome['name']} ({outcome['rfc']})", style="cyan"))
    for line in result.get("why", []):
        console.print(Text(f"  - {line}"))
    stability = result.get("stability", {})
    if stability.get("runs", 1) > 1:
        counts = ", ".join(f"{k} {v}" for k, v in stability["verdicts"].items())
        state = "stable" if stability["stable"] else "FLAKY"
        console.print(Text(f"{stability['runs']} runs, {state}: {counts}"))
    for ref in result.get("references", []):
        said = {True: "agrees", False: "differs", None: "undecided"}[ref["agrees"]]
        line = f"reference {ref['source']}, {ref['test']}: {said}"
        if ref["agrees"] is False:
            line += f" ({'; '.join(ref['differences'])}); here: {ref.get('explanation', '')}"
        console.print(Text(line, style="dim"))
    table = Table(show_header=True)
    table.add_column("fact")
    table.add_column("value")
    table.add_column("evidence", overflow="fold")
    for name, fact in result.get("facts", {}).items():
        table.add_row(Text(name), Text(plain(fact["value"])), Text(fact["evidence"]))
    console.print(table)
    console.print(Text(f"evidence in {out_dir}/ (cell.json, run.json, pcaps, middlebox logs)"))


def say_where(out_dir: str, detail: str = "", stderr: bool = True) -> None:
    """Where the results go, said before the work starts: on stderr where stdout may be
    JSON (the matrix), on stdout where stderr is kept for the one sentence of an error."""
    import os

    more = f" ({detail})" if detail else ""
    text = Text(f"results: {os.path.abspath(out_dir)}/{more}")
    Console(stderr=stderr, soft_wrap=True).print(text)


class matrix_progress:
    """Progress of a matrix on stderr: a rich bar (done / total, ETA, counts by verdict) on a
    terminal; elsewhere (CI logs, pipes) a plain line per finished cell, so the log shows
    progress as it happens. With ``as_json`` each result is also a JSON line on stdout."""

    def __init__(self, total: int, as_json: bool = False):
        from rich.progress import (
            BarColumn,
            MofNCompleteColumn,
            Progress,
            TextColumn,
            TimeRemainingColumn,
        )

        self.total, self.as_json, self.finished = total, as_json, 0
        self.counts: dict[str, int] = {}
        self.console = Console(stderr=True)
        self.live = self.console.is_terminal
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn())
        more = (TimeRemainingColumn(), TextColumn("{task.fields[counts]}"))
        self.progress = Progress(*columns, *more, console=self.console)
        self.task = self.progress.add_task("matrix", total=total, counts="")

    def __enter__(self):
        if self.live:
            self.progress.start()
        return self.done

    def done(self, result: dict) -> None:
        from mbtest import jsondoc

        self.finished += 1
        verdict = result["verdict"]
        self.counts[verdict] = self.counts.get(verdict, 0) + 1
        counts = " ".join(f"{k}:{v}" for k, v in sorted(self.counts.items()))
        if self.as_json:
            sys.stdout.write(jsondoc.dumps(result) + "\n")
            sys.stdout.flush()
        if self.live:
            self.progress.update(self.task, advance=1, counts=counts)
        else:
            seconds = result.get("seconds")
            took = f" ({seconds:.1f} s)" if isinstance(seconds, (int, float)) else ""
            line = f"[{self.finished}/{self.total}] {result['scenario']['name']}: {verdict}{took}"
            self.console.print(Text(line), soft_wrap=True)

    def __exit__(self, *exc) -> None:
        if self.live:
            self.progress.stop()


def print_matrix(results: list[dict], out_dir: str, console: Console | None = None) -> None:
    console = console or Console()
    table = Table(title="MPTCP interference matrix")
    for name in ("cell", "middlebox", "csum", "verdict", "why"):
        table.add_column(name, overflow="fold")
    for r in results:
        s = r["scenario"]
        spec = ", ".join(f"{k}={v}" for k, v in s["middleboxes"].items()) or "-"
        why = "; ".join(r.get("why", []))[:160]
        table.add_row(
            Text(s["name"]),
            Text(spec),
            Text("on" if s["checksums"] else "off"),
            Text(r["verdict"], style=VERDICT_STYLE[r["verdict"]]),
            Text(why),
        )
    console.print(table)
    counts = {}
    for r in results:
        counts[r["verdict"]] = counts.get(r["verdict"], 0) + 1
    console.print(Text(" ".join(f"{k}: {v}" for k, v in sorted(counts.items()))))
    console.print(Text(f"results: {out_dir}/results.jsonl"))


VERDICT_STYLES = {
    "as-expected": "green",
    "permitted-variant": "cyan",
    "deviates": "bold red",
    "no-answer": "yellow",
    "inconclusive": "yellow",
}


def print_conformance(probe: dict, console: Console) -> None:
    """A conformance probe: its verdict against the RFC and the exchange that shows it."""
    judged = probe["conformance"]
    console.print(Text(f"{probe['name']}: {probe['summary']}", style="bold"))
    verdict = Text(judged["verdict"], style=VERDICT_STYLES.get(judged["verdict"], ""))
    console.print(
        Text(f"  {judged['rfc']}: ") + verdict + Text(f" ({judged['outcome']}): {judged['why']}")
    )
    console.print(Text(f"  RFC: {judged['rfc_says']}", style="dim"))
    for step in judged["exchange"]:
        arrow = "->" if step["direction"] == "sent" else "<-"
        options = f" [{', '.join(step['mptcp'])}]" if step["mptcp"] else ""
        length = f" {step['payload_length']} bytes" if step["payload_length"] else ""
        reason = f" reason {step['mp_tcprst']}" if step.get("mp_tcprst") else ""
        line = f"    {step['after_seconds']:7.3f} {arrow} {step['flags']:3}{options}{length}"
        console.print(
            Text(
                f"{line}{reason}  ({step['step']})",
                style="" if step["direction"] == "sent" else "bold",
            ),
            overflow="fold",
        )
    for note in probe["notes"]:
        console.print(Text(f"  note: {note}", style="dim"))


def print_server_part(server: dict, console: Console) -> None:
    """What the cooperating server saw: the changes on the way there, with where, and on
    the way back."""
    if server.get("error"):
        style = "bold red" if server.get("tampered") else "yellow"
        console.print(Text(f"  server: {server['error']}", style=style))
        return
    if not server.get("arrived"):
        console.print(Text(f"  server: {server.get('text', 'nothing arrived')}", style="yellow"))
        return
    forward = server.get("forward", [])
    console.print(
        Text(f"  server: reached with TTL {server['ttl']}; on the way there: ")
        + Text("no change" if not forward else f"{len(forward)} change(s)")
    )
    for change in forward:
        console.print(Text(f"    -> {change['text']} ({change['where']})", style="bold yellow"))
    back = server.get("back", {})
    if back.get("changes"):
        for change in back["changes"]:
            console.print(Text(f"    <- {change['text']} (on the way back)", style="bold yellow"))
    elif "changes" in back:
        console.print(Text("    the answer came back unchanged"))
    else:
        console.print(Text(f"    {back.get('text', '')}"))
    crafted = server.get("crafted")
    if crafted:
        said = f"    the probe's options sent back ({crafted['sent']}): "
        if not crafted.get("arrived"):
            console.print(Text(said + "did not arrive", style="yellow"))
        elif not crafted["changes"]:
            console.print(Text(said + "arrived unchanged"))
        for change in crafted.get("changes", []):
            console.print(Text(f"{said}{change['text']} (on the way back)", style="bold yellow"))


def print_probes(doc: dict, console: Console | None = None) -> None:
    """One table per probe: hop, router, RTT, quote, changes (first appearances marked)."""
    console = console or Console()
    target = doc["target"]
    console.print(
        Text(str(target["name"]), style="bold")
        + Text(
            f" ({target['address']}) port {target['port']}, "
            f"from {doc['source']}, {doc['mode']} sweep, {doc['seconds']} s"
        )
    )
    if doc.get("interrupted"):
        console.print(Text(f"interrupted: {doc['interrupted']}", style="yellow"))
    for probe in doc["probes"]:
        title = f"{probe['name']}: {probe['summary']}"
        if probe.get("error"):
            style = "yellow" if probe.get("setup_failed") else "red"
            console.print(Text(f"{title}\n  not run: {probe['error']}", style=style))
            continue
        if probe.get("conformance"):
            print_conformance(probe, console)
            continue
        table = Table(title=Text(title), title_justify="left", show_lines=False)
        for name in ("hop", "router", "RTT ms", "quote", "changes (* first seen here)"):
            table.add_column(name, overflow="fold")
        for hop in probe["hops"]:
            if hop["silent"]:
                table.add_row(Text(str(hop["ttl"])), Text("* silent *", style="dim"))
                continue
            router = hop["router"] + (f"\n{hop['name']}" if hop.get("name") else "")
            changes = Text()
            for change in hop["changes"]:
                line = ("* " if change["first"] else "  ") + change["text"]
                changes.append(
                    ("\n" if changes.plain else "") + line,
                    style="bold yellow" if change["first"] else "",
                )
            extra = "" if hop["icmp"] == "time exceeded" else f"\n{hop['icmp']}"
            table.add_row(
                Text(str(hop["ttl"])),
                Text(router + extra),
                Text(f"{hop['rtt_ms']:.1f}"),
                Text(str(hop["quote"])),
                changes or Text("-", style="dim"),
            )
        console.print(table)
        dest = probe["destination"]
        where = f" at hop {dest['ttl']}" if dest.get("ttl") else ""
        check = f" ({dest['check']})" if dest.get("check") else ""
        console.print(Text(f"  destination{where}: {dest['text']}{check}"))
        first = probe["first_change"]
        if first:
            console.print(Text(f"  first change at hop {first['ttl']} ({first['router']})"))
        else:
            console.print(Text("  no change on the path"))
        if probe.get("server"):
            print_server_part(probe["server"], console)
        for note in probe["notes"]:
            console.print(Text(f"  note: {note}", style="dim"))
