"""mbtest probe --targets: a campaign's input, output and progress around probe.campaign."""

from __future__ import annotations

import dataclasses
import os
import sys
import time

import click

from mbtest import jsondoc
from mbtest.errors import FINDINGS, OK, MbtestError


def run_campaign(
    targets_file: str,
    options,
    workers: int,
    pps: float,
    out_file: str | None,
    resume: bool,
    command: str,
    pcap_dir: str | None = None,
) -> int:
    """Probe every target of the file; a compact JSON line per target on stdout (and in
    ``out_file``) as each ends, progress on stderr; the exit status."""
    from mbtest.probe import campaign
    from mbtest.probe.run import run

    lines = _read_lines(targets_file)
    targets = list(campaign.read_targets(lines, options.port))
    done: set = set()
    if resume and out_file and os.path.exists(out_file):
        with open(out_file, errors="replace") as f:
            done = campaign.already_done(f)
    plan = campaign.Campaign(targets, workers, campaign.PacketBudget(pps), done)
    part = {"workers": workers, "pps": pps}
    click.echo(
        f"campaign: {len(targets)} targets ({len(targets) - len(plan.todo)} already done), "
        f"{workers} workers, a budget of {pps:g} packets/s",
        err=True,
    )

    def probe_target(target, budget):
        asked = dataclasses.replace(options, port=target.port)
        pcap = campaign.pcap_path(pcap_dir, target.host, target.port) if pcap_dir else None
        return run(target.host, asked, command=command, budget=budget, pcap=pcap)

    out = open(out_file, "a" if resume else "w") if out_file else None  # noqa: SIM115
    progress = _Progress(plan)
    try:

        def on_result(doc: dict) -> None:
            doc["campaign"].update(part)
            line = jsondoc.dumps(doc)
            click.echo(line)
            if out is not None:
                out.write(line + "\n")
                out.flush()
            progress.update()

        stopped = campaign.run(plan, probe_target, on_result)
    finally:
        progress.close()
        if out is not None:
            out.close()
    click.echo(f"campaign: {campaign.progress_line(plan)}", err=True)
    click.echo(f"campaign: {campaign.budget_line(plan)}", err=True)
    if stopped is not None:
        raise stopped
    return FINDINGS if plan.counts["changed"] or plan.counts["error"] else OK


def _read_lines(path: str) -> list[str]:
    if path == "-":
        return sys.stdin.read().splitlines()
    try:
        with open(path, errors="replace") as f:
            return f.read().splitlines()
    except OSError as e:
        raise MbtestError(f"cannot read the targets file {path}: {e.strerror}") from None


class _Progress:
    """A bar on a terminal; elsewhere a plain line at most every second."""

    def __init__(self, plan):
        from mbtest.probe.campaign import progress_line

        self.plan, self.line = plan, progress_line
        self.last = 0.0
        self.bar = None
        if sys.stderr.isatty():
            from rich.console import Console
            from rich.progress import Progress

            self.bar = Progress(console=Console(stderr=True), transient=True)
            self.bar.start()
            self.task = self.bar.add_task("campaign", total=len(plan.todo))

    def update(self) -> None:
        if self.bar is not None:
            self.bar.update(self.task, advance=1, description=self.line(self.plan))
        elif time.monotonic() - self.last >= 1.0:
            self.last = time.monotonic()
            click.echo(f"campaign: {self.line(self.plan)}", err=True)

    def close(self) -> None:
        if self.bar is not None:
            self.bar.stop()
