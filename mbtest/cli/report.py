"""mbtest report: one self-contained HTML page from results files."""

from __future__ import annotations

import click


@click.command("report")
@click.argument("results", nargs=-1, required=True)
@click.option(
    "-o", "--out", "out_file", default=None, help="HTML file (default: beside the first results)."
)
def report_command(results: tuple[str, ...], out_file: str | None) -> None:
    """Render matrix results (results.jsonl files or their directories) into one HTML file."""
    from mbtest.report.render import render_results

    path = render_results(list(results), out_file)
    click.echo(f"report: {path}")


COMMANDS = (report_command,)
