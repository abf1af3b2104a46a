"""Option values shared by several commands, parsed into the objects the layers below take."""

from __future__ import annotations

import click

from mbtest.errors import MbtestError


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
