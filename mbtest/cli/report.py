"""mbtest report: one self-contained HTML page from results files (shards merged)."""

from __future__ import annotations

import click

EPILOG = """\b
Examples:
  mbtest report reports/latest                      the report of the last matrix
  mbtest report shard1 shard2 shard3 -o all.html    shards of one matrix, one page
  mbtest report out/ --junit matrix.xml             and JUnit XML for a CI system
  mbtest report probe.json                          a probe result (probe -o, probe --json)

Exit status: 0 written, 2 usage error (a file that is not a result)."""


@click.command("report", epilog=EPILOG)
@click.argument("results", nargs=-1, required=True)
@click.option(
    "-o", "--out", "out_file", default=None, help="HTML file (default: beside the first results)."
)
@click.option(
    "--junit", "junit_file", default=None, metavar="FILE", help="Also write JUnit XML here."
)
def report_command(results: tuple[str, ...], out_file: str | None, junit_file: str | None) -> None:
    """Render matrix results (results.jsonl files or their folders, shards of one matrix
    included) and probe results into one HTML file."""
    from mbtest.host import paths
    from mbtest.report.render import render_results

    if out_file:
        paths.output_file(out_file, "-o")
    if junit_file:
        paths.output_file(junit_file, "--junit")
    path = render_results(list(results), out_file)
    click.echo(f"report: {path}")
    if junit_file:
        from mbtest.report import junit

        junit.write(list(results), junit_file)
        click.echo(f"junit: {junit_file}")


COMMANDS = (report_command,)
