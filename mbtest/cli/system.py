"""mbtest selfcheck and mbtest cleanup: this machine's MPTCP, and what killed runs left."""

from __future__ import annotations

import sys

import click

from mbtest.cli.options import finish, no_fail_option


@click.command()
@click.option("-6", "ipv6", is_flag=True, help="Run the exchange over IPv6.")
@click.option("--checksum/--no-checksum", default=True, show_default=True, help="DSS checksums.")
@click.option(
    "--size",
    default=200_000,
    show_default=True,
    type=click.IntRange(1, 1 << 30),
    help="Bytes sent client to server (half as many back).",
)
@click.option(
    "-o", "--out", "out_dir", default=None, help="Results folder (default: ./reports/<time>/)."
)
@click.option("--json", "as_json", is_flag=True, help="Print the selfcheck document as JSON.")
@no_fail_option
def selfcheck(
    ipv6: bool, checksum: bool, size: int, out_dir: str | None, as_json: bool, no_fail: bool
) -> None:
    """Check this machine and the codec: a real two-path MPTCP exchange, captured, decoded,
    compared field by field and its crypto recomputed.

    \b
    Examples:
      sudo mbtest selfcheck
      sudo mbtest selfcheck -6 --no-checksum --json

    Exit status: 0 every check holds, 1 a mismatch (0 with --no-fail), 2 usage error,
    3 harness error."""
    from mbtest import jsondoc
    from mbtest.cli.ui import print_selfcheck, say_where
    from mbtest.errors import FINDINGS, OK
    from mbtest.experiment.output import results_dir
    from mbtest.experiment.selfcheck import run_selfcheck
    from mbtest.testbed.builder import check_mptcp

    check_mptcp()  # (before a results folder is made or named)
    with results_dir(out_dir) as out_dir:
        if not as_json:
            say_where(out_dir, stderr=False)
        version = 6 if ipv6 else 4
        document = run_selfcheck(out_dir, ip_version=version, checksums=checksum, size=size)
    if as_json:
        click.echo(jsondoc.dumps(document))
    else:
        print_selfcheck(document, out_dir)
    sys.exit(finish(OK if document["ok"] else FINDINGS, no_fail))


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--force", is_flag=True, help="Also remove what live runs and topo up own.")
@click.option("--json", "as_json", is_flag=True, help="Print what was removed and kept as JSON.")
def cleanup(dry_run: bool, force: bool, as_json: bool) -> None:
    """Remove namespaces, processes, links, state and rules that killed runs left behind;
    what a live run or topo up owns is kept (and listed)."""
    from mbtest import jsondoc
    from mbtest.host.cleanup import cleanup as do_cleanup

    report = do_cleanup(dry_run=dry_run, force=force)
    if as_json:
        said = {"dry_run": dry_run, "removed": report.removed, "kept": report.kept}
        click.echo(jsondoc.dumps(said))
        return
    verb = "would remove" if dry_run else "removed"
    if not report.removed:
        click.echo("nothing to remove")
    for line in report.removed:
        click.echo(f"{verb} {line}")
    for line in report.kept:
        click.echo(f"kept {line}")


COMMANDS = (selfcheck, cleanup)
