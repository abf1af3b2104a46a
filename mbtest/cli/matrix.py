"""mbtest matrix: the grid of scenarios, in parallel, ending in an HTML report."""

from __future__ import annotations

import sys

import click

from mbtest.cli.options import (
    complete_behaviour,
    complete_cell,
    complete_topology,
    finish,
    kernel_option,
    kernels_of,
    no_fail_option,
    say_if_no_fast_path,
)

EPILOG = """\b
Examples:
  sudo mbtest matrix                                the default grid, IPv4 and IPv6
  sudo mbtest matrix --list --ip 4                  which cells, without running them
  sudo mbtest matrix --middlebox coalesce --repeat 5
  sudo mbtest matrix --cell payload-flip-c2s-csum -o out/
  sudo mbtest matrix --shard 2/3 -o shard2 --junit shard2.xml --no-fail
  sudo mbtest matrix --resume reports/20261130-041500
  sudo mbtest matrix --kernel 6.1 --kernel host    each cell on Linux 6.1 and on this host
  mbtest report shard1 shard2 shard3 -o all.html --junit all.xml

Exit status: 0 every cell as expected or a permitted variant, 1 findings (deviates, flaky,
inconclusive; 0 with --no-fail), 2 usage error, 3 harness error, 130/143 interrupted."""


@click.command("matrix", epilog=EPILOG)
@click.option(
    "--topology",
    "topologies",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_topology,
    help="Only cells on these topologies.",
)
@click.option(
    "--cell",
    "names",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_cell,
    help="Only these cells (an IPv4 name stands for both versions, '-ipv6' for one).",
)
@click.option(
    "--middlebox",
    "behaviours",
    multiple=True,
    metavar="NAME",
    shell_complete=complete_behaviour,
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
@click.option(
    "--shard",
    default=None,
    metavar="I/N",
    help="Run every N-th selected cell from the I-th (a deterministic split across machines).",
)
@click.option(
    "--resume",
    "resume_dir",
    default=None,
    metavar="DIR",
    help="Finish a stopped run in DIR: the same cells, only those without a result.",
)
@click.option(
    "-o", "--out", "out_dir", default=None, help="Results folder (default: ./reports/<time>/)."
)
@click.option(
    "--junit", "junit_file", default=None, metavar="FILE", help="Also write JUnit XML here."
)
@click.option(
    "--json", "as_json", is_flag=True, help="Print each cell's result as a JSON line as it ends."
)
@click.option("--list", "list_only", is_flag=True, help="Print the selected cells and stop.")
@kernel_option
@no_fail_option
def matrix_command(
    topologies,
    names,
    behaviours,
    checksum,
    ip,
    jobs,
    repeat,
    shard,
    resume_dir,
    out_dir,
    junit_file,
    as_json,
    list_only,
    kernels,
    no_fail,
):
    """Run the grid of scenarios in parallel; results.jsonl, matrix.json and report.html in
    a results folder, each cell's evidence beside them."""
    from mbtest import jsondoc
    from mbtest.cli import ui
    from mbtest.errors import MbtestError
    from mbtest.experiment import grid, matrix
    from mbtest.experiment.output import results_dir
    from mbtest.host import paths

    full = grid.default_grid()
    if resume_dir:
        if out_dir or shard or topologies or names or behaviours or list_only or kernels:
            raise MbtestError("--resume takes the cells and folder of the run it resumes alone")
        plan, done_before = matrix.resume(resume_dir, full)
        plan.jobs, plan.repeat = jobs, plan.repeat
        out_dir = resume_dir
    else:
        chosen = kernels_of(kernels)
        selected = _selection(full, topologies, names, behaviours, checksum, ip)
        plan = matrix.Plan(
            selection=[cell.on_kernel(k) for k in chosen for cell in selected],
            shard=matrix.shard_of(shard) if shard else (1, 1),
            jobs=jobs,
            repeat=repeat,
            filters={
                "topology": list(topologies),
                "cell": list(names),
                "middlebox": list(behaviours),
                "checksum": checksum,
                "ip": ip,
                "kernel": chosen,
            },
        )
        done_before = []
    plan.command = " ".join(["mbtest", *sys.argv[1:]])
    if not plan.cells:
        raise MbtestError(f"shard {shard} of {len(plan.selection)} cells holds none")
    if list_only:
        for cell in plan.cells:
            if as_json:
                click.echo(jsondoc.dumps(cell.to_json()))
            else:
                boxes = " ".join(f"{slot}={spec.text}" for slot, spec in cell.middleboxes.items())
                csum = "csum" if cell.checksums else "nocsum"
                click.echo(f"{cell.name}\t{cell.topology}\t{csum}\t{cell.expect}\t{boxes or '-'}")
        return
    if junit_file:
        paths.output_file(junit_file, "--junit")
    from mbtest.testbed.builder import check_mptcp

    check_mptcp()
    say_if_no_fast_path([s for c in plan.cells for s in c.middleboxes.values()])
    todo = len(plan.cells) - len(done_before)
    with results_dir(out_dir) as out_dir:
        kept = f", {len(done_before)} kept from before" if done_before else ""
        ui.say_where(out_dir, f"{todo} cells to run{kept}")
        with ui.matrix_progress(todo, as_json) as on_done:
            try:
                results, report = matrix.run_matrix(plan, out_dir, on_done, done_before)
            finally:
                if junit_file:
                    _junit(out_dir, junit_file)
    if not as_json:
        ui.print_matrix(results, out_dir)
    click.echo(f"report: {report}", err=as_json)
    sys.exit(finish(matrix.exit_status(results), no_fail))


def _selection(full, topologies, names, behaviours, checksum, ip):
    """The cells the filters select, in grid order; MbtestError naming a bad filter."""
    from mbtest.errors import MbtestError
    from mbtest.experiment import grid
    from mbtest.middlebox.catalog import CATALOG
    from mbtest.testbed import topology

    for name in behaviours:
        if name != "none" and name not in CATALOG:
            raise MbtestError(f"unknown middlebox behaviour {name!r} (see mbtest middlebox ls)")
    for name in topologies:
        if name not in topology.available():
            raise MbtestError(f"unknown topology {name!r} (see mbtest topo ls)")
    known = {s.name for s in full}
    known |= {name.removesuffix("-ipv6") for name in known}
    unknown = [n for n in names if n not in known]
    if unknown:
        raise MbtestError(f"unknown cell {unknown[0]!r} (see mbtest matrix --list)")
    versions = (4, 6) if ip == "both" else (int(ip),)
    cells = grid.select(grid.default_grid(versions), topologies, behaviours, checksum, names)
    if not cells:
        raise MbtestError("no cell of the matrix matches these filters")
    return cells


def _junit(out_dir: str, junit_file: str) -> None:
    """JUnit XML of what finished (also after Ctrl-C): a test case per cell."""
    import os

    from mbtest.report import junit

    if os.path.exists(os.path.join(out_dir, "results.jsonl")):
        junit.write([out_dir], junit_file)


COMMANDS = (matrix_command,)
