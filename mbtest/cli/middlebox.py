"""mbtest middlebox: the catalog of behaviours."""

from __future__ import annotations

import click


@click.group()
def middlebox() -> None:
    """The middlebox catalog."""


@middlebox.command("ls")
def middlebox_ls() -> None:
    """List every middlebox behaviour."""
    from mbtest.middlebox.catalog import CATALOG

    for name, cls in sorted(CATALOG.items()):
        click.echo(f"{name:18} {cls.ENGINE:8} {cls.MODELS}")


@middlebox.command("show")
@click.argument("name")
def middlebox_show(name: str) -> None:
    """What behaviour NAME models, its parameters, what it does, what RFC 8684 expects."""
    from mbtest.middlebox import catalog
    from mbtest.middlebox.base import Behaviour

    cls = catalog.get(name)
    fast = " with its native fast path" if cls.native_args is not Behaviour.native_args else ""
    click.echo(f"{cls.NAME} ({cls.ENGINE}{fast})")
    click.echo(f"  models:   {cls.MODELS}")
    click.echo(f"  does:     {cls.DOES}")
    click.echo(f"  expected: {cls.EXPECTED} (RFC 8684 {cls.RFC})")
    click.echo("  parameters:" if cls.PARAMS else "  parameters: none")
    for p in cls.PARAMS:
        default = "+".join(p.default) if isinstance(p.default, tuple) else p.default
        click.echo(f"    {p.name}={default!s:<14} {p.help}; {p.describe()}")
    click.echo(
        f"  syntax:   {cls.NAME}"
        + (":" + ",".join(f"{p.name}=..." for p in cls.PARAMS) if cls.PARAMS else "")
    )


COMMANDS = (middlebox,)
