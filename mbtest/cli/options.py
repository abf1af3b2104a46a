"""Option values shared by several commands, parsed into the objects the layers below take."""

from __future__ import annotations

import click

from mbtest.errors import FINDINGS, OK, MbtestError


def key_values(values: tuple[str, ...], option: str = "--param") -> dict[str, str]:
    """KEY=VALUE items (topology parameters)."""
    out = {}
    for item in values:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise click.BadParameter(f"{item!r} is not KEY=VALUE", param_hint=option)
        out[key] = value
    return out


def middleboxes(values: tuple[str, ...]) -> dict:
    """SLOT=NAME[:key=value,...] items, each parsed once into a MiddleboxSpec."""
    from mbtest.middlebox.spec import placements

    try:
        return placements(values)
    except MbtestError as e:
        raise click.BadParameter(str(e), param_hint="--middlebox") from None


no_fail_option = click.option(
    "--no-fail",
    is_flag=True,
    help="Exit 0 on findings (deviations, flaky cells, changes on the path): for CI jobs that "
    "collect results and judge them later. Harness errors still exit 3.",
)


def finish(status: int, no_fail: bool) -> int:
    """The exit status to use: findings become 0 with --no-fail."""
    return OK if no_fail and status == FINDINGS else status


def complete_behaviour(ctx, param, incomplete: str) -> list:
    """Shell completion of a middlebox behaviour name (and, after ':', its parameters)."""
    from click.shell_completion import CompletionItem

    from mbtest.middlebox.catalog import CATALOG

    name, sep, _ = incomplete.partition(":")
    if sep and name in CATALOG:
        return [CompletionItem(f"{name}:{p.name}=", help=p.help) for p in CATALOG[name].PARAMS]
    return [
        CompletionItem(n, help=c.MODELS)
        for n, c in sorted(CATALOG.items())
        if n.startswith(incomplete)
    ]


def complete_placement(ctx, param, incomplete: str) -> list:
    """SLOT=NAME: completes the behaviour after '='."""
    from click.shell_completion import CompletionItem

    slot, sep, rest = incomplete.partition("=")
    if not sep:
        return []
    return [CompletionItem(f"{slot}={item.value}") for item in complete_behaviour(ctx, param, rest)]


def complete_topology(ctx, param, incomplete: str) -> list:
    """Shell completion of a topology name."""
    from mbtest.testbed import topology

    return [name for name in topology.available() if name.startswith(incomplete)]


def complete_cell(ctx, param, incomplete: str) -> list:
    """Shell completion of a matrix cell name."""
    from mbtest.experiment import grid

    return [s.name for s in grid.default_grid() if s.name.startswith(incomplete)]


def complete_probe(ctx, param, incomplete: str) -> list:
    """Shell completion of a shipped probe's name (a file path completes as a path)."""
    from mbtest.probe import loader

    return [name for name in loader.available() if name.startswith(incomplete)]


def say_if_no_fast_path(specs) -> None:
    """One sentence on stderr when a behaviour that has a native fast path will run on the
    Python engine instead (slower, same results)."""
    import os

    from mbtest.middlebox import native

    wanted = sorted({s.name for s in specs if s.build().native_args() is not None})
    if not wanted or os.environ.get("MBTEST_NATIVE") == "0":
        return
    path, why = native.binary()
    if path is None:
        click.echo(
            f"mbtest: the native fast path is unavailable ({why}): {', '.join(wanted)} run on "
            "the Python engine (slower on every packet, same results)",
            err=True,
        )


kernel_option = click.option(
    "--kernel",
    "kernels",
    multiple=True,
    metavar="VERSION",
    help="Endpoints on this cached kernel, in a VM (repeatable: each kernel in turn; "
    "'host' is the default; mbtest kernel fetch VERSION first).",
)


def kernels_of(values: tuple[str, ...]) -> list[str]:
    """The --kernel values in order, each once ('host' by default); one sentence for a
    kernel that is not cached (before anything is built)."""
    from mbtest.errors import MbtestError
    from mbtest.host import kernels
    from mbtest.testbed.topology import KERNEL

    chosen: list[str] = []
    for value in values or ("host",):
        if not KERNEL.fullmatch(value):
            raise MbtestError(f"--kernel {value!r}: give host or a version such as 6.1")
        if value != "host":
            kernels.find(value)  # (not cached: one sentence saying how to fetch it)
        if value not in chosen:
            chosen.append(value)
    return chosen
