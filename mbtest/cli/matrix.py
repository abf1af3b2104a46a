"""mbtest matrix: the grid of scenarios, in parallel, ending in an HTML report."""

from __future__ import annotations

import sys

import click


@click.command("matrix")
@click.option("--topology", "topologies", multiple=True, help="Only cells on these topologies.")
@click.option(
    "--cell",
    "names",
    multiple=True,
    metavar="NAME",
    help="Only these cells (an IPv4 name stands for both versions, '-ipv6' for one).",
)
@click.option(
    "--middlebox",
    "behaviours",
    multiple=True,
    help="Only cells of these behaviours ('none': baselines).",
)
@click.option(
    "--checksum", type=click.Choice(["on", "off", "both"]), default="both", show_default=True
)
@click.option(
    "--ip",
    "ip",
    type=click.Choice(["4", "6", "both"]),
    default="both",
    show_default=True,
    help="IP version of the cells.",
)
@click.option("-j", "--jobs", default=2, show_default=True, type=click.IntRange(1, 16))
@click.option(
    "--repeat",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Run every cell N times: a cell whose runs disagree is flaky.",
)
@click.option("-o", "--out", "out_dir", default=None)
@click.option("--list", "list_only", is_flag=True, help="Print the selected cells and stop.")
def matrix_command(topologies, names, behaviours, checksum, ip, jobs, repeat, out_dir, list_only):
    """Run the grid of scenarios in parallel; write results.jsonl under reports/."""
    from mbtest.cli.ui import matrix_progress, print_matrix
    from mbtest.errors import MbtestError
    from mbtest.experiment import grid, matrix
    from mbtest.experiment.output import results_dir
    from mbtest.middlebox.catalog import CATALOG
    from mbtest.testbed.builder import check_mptcp

    for name in behaviours:
        if name != "none" and name not in CATALOG:
            raise MbtestError(f"unknown middlebox behaviour {name!r} (see mbtest middlebox ls)")
    known = {s.name for s in grid.default_grid()}
    known |= {name.removesuffix("-ipv6") for name in known}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MbtestError(f"unknown cell {unknown[0]!r} (see mbtest matrix --list)")
    versions = (4, 6) if ip == "both" else (int(ip),)
    cells = grid.select(grid.default_grid(versions), topologies, behaviours, checksum, names)
    if not cells:
        raise MbtestError("no cell of the matrix matches these filters")
    if list_only:
        for cell in cells:
            boxes = " ".join(f"{slot}={spec.text}" for slot, spec in cell.middleboxes.items())
            csum = "csum" if cell.checksums else "nocsum"
            click.echo(f"{cell.name}\t{cell.topology}\t{csum}\t{cell.expect}\t{boxes or '-'}")
        return
    check_mptcp()
    with results_dir(out_dir) as out_dir, matrix_progress(len(cells)) as on_done:
        command = " ".join(sys.argv)
        results, report = matrix.run_matrix(cells, out_dir, jobs, on_done, command, repeat)
    print_matrix(results, out_dir)
    click.echo(f"report: {report}")
    sys.exit(matrix.exit_status(results))


COMMANDS = (matrix_command,)
