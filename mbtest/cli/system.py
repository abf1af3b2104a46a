"""mbtest selfcheck and mbtest cleanup: this machine's MPTCP, and what killed runs left."""

from __future__ import annotations

import sys

import click


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
@click.option("-o", "--out", "out_dir", default=None, help="Directory for the results.")
def selfcheck(ipv6: bool, checksum: bool, size: int, out_dir: str | None) -> None:
    """Check this machine and the codec: a real two-path MPTCP exchange, captured, decoded,
    compared field by field and its crypto recomputed."""
    from mbtest.cli.ui import print_selfcheck
    from mbtest.experiment.output import results_dir
    from mbtest.experiment.selfcheck import run_selfcheck

    with results_dir(out_dir) as out_dir:
        version = 6 if ipv6 else 4
        document = run_selfcheck(out_dir, ip_version=version, checksums=checksum, size=size)
    print_selfcheck(document, out_dir)
    if not document["ok"]:
        sys.exit(1)


@click.command()
@click.option("--dry-run", is_flag=True, help="Only list what would be removed.")
@click.option("--force", is_flag=True, help="Also remove what live runs and topo up own.")
def cleanup(dry_run: bool, force: bool) -> None:
    """Remove namespaces, processes, links, state and rules that killed runs left behind;
    what a live run or topo up owns is kept (and listed)."""
    from mbtest.host.cleanup import cleanup as do_cleanup

    report = do_cleanup(dry_run=dry_run, force=force)
    verb = "would remove" if dry_run else "removed"
    if not report.removed:
        click.echo("nothing to remove")
    for line in report.removed:
        click.echo(f"{verb} {line}")
    for line in report.kept:
        click.echo(f"kept {line}")


COMMANDS = (selfcheck, cleanup)
