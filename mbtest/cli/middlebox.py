"""mbtest middlebox: the catalog of behaviours."""

from __future__ import annotations

import click

from mbtest import jsondoc
from mbtest.cli.options import complete_behaviour


@click.group()
def middlebox() -> None:
    """The middlebox catalog."""


@middlebox.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per behaviour.")
def middlebox_ls(as_json: bool) -> None:
    """List every middlebox behaviour."""
    from mbtest.middlebox.catalog import CATALOG

    for name, cls in sorted(CATALOG.items()):
        if as_json:
            click.echo(jsondoc.dumps(_described(cls)))
        else:
            click.echo(f"{name:18} {cls.ENGINE:8} {cls.MODELS}")


def _described(cls) -> dict:
    return {
        "name": cls.NAME,
        "engine": cls.ENGINE,
        "models": cls.MODELS,
        "does": cls.DOES,
        "expected": cls.EXPECTED,
        "rfc": cls.RFC,
        "ip_versions": list(cls.IP_VERSIONS),
        "parameters": [
            {
                "name": p.name,
                "type": p.kind,
                "default": list(p.default) if isinstance(p.default, tuple) else p.default,
                "help": p.help,
                "allowed": p.describe(),
            }
            for p in cls.PARAMS
        ],
        "cells": [c.name for c in cls.CELLS],
    }


@middlebox.command("show")
@click.argument("name", shell_complete=complete_behaviour)
@click.option("--json", "as_json", is_flag=True, help="Print it as one JSON line.")
def middlebox_show(name: str, as_json: bool) -> None:
    """What behaviour NAME models, its parameters, what it does, what RFC 8684 expects."""
    from mbtest.middlebox import catalog
    from mbtest.middlebox.base import Behaviour

    cls = catalog.get(name)
    if as_json:
        click.echo(jsondoc.dumps(_described(cls)))
        return
    fast = " with its native fast path" if cls.native_args is not Behaviour.native_args else ""
    click.echo(f"{cls.NAME} ({cls.ENGINE}{fast})")
    click.echo(f"  models:   {cls.MODELS}")
    click.echo(f"  does:     {cls.DOES}")
    click.echo(f"  expected: {cls.EXPECTED} (RFC 8684 {cls.RFC})")
    click.echo("  parameters:" if cls.PARAMS else "  parameters: none")
    shown = [
        (f"{p.name}={'+'.join(p.default) if isinstance(p.default, tuple) else p.default}", p)
        for p in cls.PARAMS
    ]
    width = max((len(text) for text, _ in shown), default=0)
    for text, p in shown:
        click.echo(f"    {text:<{width}}  {p.help}; {p.describe()}")
    click.echo(
        f"  syntax:   {cls.NAME}"
        + (":" + ",".join(f"{p.name}=..." for p in cls.PARAMS) if cls.PARAMS else "")
    )


COMMANDS = (middlebox,)
