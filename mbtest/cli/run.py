"""mbtest run: one scenario, its verdict and its facts with their evidence."""

from __future__ import annotations

import os
import sys

import click

from mbtest.cli.options import (
    complete_cell,
    complete_placement,
    complete_topology,
    finish,
    kernel_option,
    kernels_of,
    middleboxes,
    no_fail_option,
    say_if_no_fast_path,
)


@click.command(
    "run",
    epilog="""\b
Examples:
  sudo mbtest run --cell payload-flip-c2s-csum       a cell of the matrix, its conditions too
  sudo mbtest run --cell coalesce-across-mappings -6 --repeat 5
  sudo mbtest run --middlebox slot=strip-option:subtypes=DSS --expect fallback-without-dss
  sudo mbtest run my-scenario.toml -o out/ --json
  mbtest expect ls                                   the expectations --expect takes

Exit status: 0 as expected or a permitted variant, 1 a finding (deviates, flaky,
inconclusive; 0 with --no-fail), 2 usage error, 3 harness error, 130/143 interrupted.""",
)
@click.argument("scenario_file", required=False)
@click.option(
    "--cell",
    "cell_name",
    metavar="NAME",
    shell_complete=complete_cell,
    help="A cell of the default matrix, with its run conditions (see matrix --list).",
)
@click.option(
    "--topology", default="single-path", show_default=True, shell_complete=complete_topology
)
@click.option(
    "--middlebox",
    "placed",
    multiple=True,
    metavar="SLOT=NAME:k=v,...",
    shell_complete=complete_placement,
)
@click.option("--expect", default="mptcp-unaffected", show_default=True, help="Expectation name.")
@click.option("--checksum/--no-checksum", default=False, show_default=True)
@click.option("-6", "ipv6", is_flag=True)
@click.option("-o", "--out", "out_dir", default=None)
@click.option("--quiet", is_flag=True, help="Only write the result.")
@click.option("--json", "as_json", is_flag=True, help="Print the cell result as one JSON line.")
@click.option(
    "--repeat",
    default=1,
    show_default=True,
    type=click.IntRange(1, 100),
    help="Run it N times: runs that disagree make it flaky.",
)
@kernel_option
@no_fail_option
def run_command(
    scenario_file,
    cell_name,
    topology,
    placed,
    expect,
    checksum,
    ipv6,
    out_dir,
    quiet,
    as_json,
    repeat,
    kernels,
    no_fail,
):
    """Run one scenario (a TOML/JSON file, a cell of the matrix, or the options) and print its
    verdict with evidence."""
    from mbtest import jsondoc
    from mbtest.cli.ui import print_cell, say_where
    from mbtest.errors import MbtestError
    from mbtest.experiment import grid
    from mbtest.experiment import scenario as scenarios
    from mbtest.experiment.cell import exit_status, run_repeated
    from mbtest.experiment.output import results_dir
    from mbtest.testbed.builder import check_mptcp

    if scenario_file and cell_name:
        raise MbtestError("give a scenario file or --cell, not both")
    if cell_name:
        wanted = grid.name_for(cell_name.removesuffix("-ipv6"), 6 if ipv6 else 4)
        wanted = cell_name if cell_name.endswith("-ipv6") else wanted
        found = [s for s in grid.default_grid() if s.name == wanted]
        if not found:
            raise MbtestError(f"unknown cell {wanted!r} (see mbtest matrix --list)")
        scenario = found[0]
    elif scenario_file:
        scenario = scenarios.load(scenario_file)
    else:
        specs = middleboxes(placed)
        name = "-".join([topology, *(spec.name for spec in specs.values())])
        scenario = scenarios.Scenario(
            name=name,
            topology=topology,
            middleboxes=specs,
            expect=expect,
            checksums=checksum,
            ip_version=6 if ipv6 else 4,
        )
    say_if_no_fast_path(list(scenario.middleboxes.values()))
    check_mptcp()  # (before a results folder is made or named)
    kernels = kernels_of(kernels)
    statuses = []
    with results_dir(out_dir) as out_dir:
        if not (quiet or as_json):
            say_where(out_dir, f"{repeat} runs" if repeat > 1 else "", stderr=False)
        for kernel in kernels:  # one folder per kernel when there are several
            where = out_dir if len(kernels) == 1 else os.path.join(out_dir, kernel)
            result = run_repeated(scenario.on_kernel(kernel), where, repeat)
            statuses.append(exit_status(result))
            if as_json:
                click.echo(jsondoc.dumps(result))
            elif not quiet:
                print_cell(result, where)
    sys.exit(finish(max(statuses), no_fail))


COMMANDS = (run_command,)
