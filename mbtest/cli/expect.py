"""mbtest expect: the expectations a scenario can name (what RFC 8684 permits and forbids)."""

from __future__ import annotations

import click

from mbtest import jsondoc


def complete_expectation(ctx, param, incomplete: str) -> list:
    from mbtest.verdict.expect import EXPECTATIONS

    return [name for name in sorted(EXPECTATIONS) if name.startswith(incomplete)]


@click.group("expect")
def expect() -> None:
    """The expectations (mbtest run --expect NAME, expect = "NAME" in a scenario file)."""


@expect.command("ls")
@click.option("--json", "as_json", is_flag=True, help="One JSON line per expectation.")
def expect_ls(as_json: bool) -> None:
    """List every expectation with its RFC section and main outcome."""
    from mbtest.verdict.expect import EXPECTATIONS

    for name, e in sorted(EXPECTATIONS.items()):
        if as_json:
            click.echo(jsondoc.dumps(_described(e)))
        else:
            more = f" (+{len(e.variants)} permitted)" if e.variants else ""
            click.echo(f"{name:26} {e.rfc:16} {e.main.text}{more}")


@expect.command("show")
@click.argument("name", shell_complete=complete_expectation)
@click.option("--json", "as_json", is_flag=True, help="Print it as one JSON line.")
def expect_show(name: str, as_json: bool) -> None:
    """An expectation: its outcomes (each with its section and why it is permitted), what
    must hold whatever the outcome, and the timer it waits for."""
    from mbtest.errors import MbtestError
    from mbtest.verdict.expect import EXPECTATIONS, SAID

    if name not in EXPECTATIONS:
        raise MbtestError(f"unknown expectation {name!r} (see mbtest expect ls)")
    e = EXPECTATIONS[name]
    if as_json:
        click.echo(jsondoc.dumps(_described(e)))
        return
    click.echo(f"{e.name} (RFC 8684 {e.rfc})")
    click.echo("  always: " + "; ".join(_check(c, SAID) for c in e.always))
    for outcome in (e.main, *e.variants):
        label = "main outcome" if outcome is e.main else f"permitted: {outcome.name}"
        click.echo(f"  {label} ({outcome.rfc}): {outcome.text}")
        if outcome.why:
            click.echo(f"    why permitted: {outcome.why}")
        if outcome.checks:
            click.echo("    when: " + "; ".join(_check(c, SAID) for c in outcome.checks))
    if e.timer:
        click.echo(
            f"  waits for: {e.timer.what} ({e.timer.sysctl} on the {e.timer.node}, "
            f"{e.timer.default:g} s by default)"
        )


def _check(check, said) -> str:
    name, op, operand = check
    return f"{name} {said[op] or '= '}{jsondoc.plain(operand)}"


def _described(e) -> dict:
    def checks(items):
        return [{"fact": n, "operator": op, "operand": v} for n, op, v in items]

    return {
        "name": e.name,
        "rfc": e.rfc,
        "always": checks(e.always),
        "outcomes": [{**o.to_json(), "checks": checks(o.checks)} for o in (e.main, *e.variants)],
        "timer": None
        if e.timer is None
        else {
            "what": e.timer.what,
            "node": e.timer.node,
            "sysctl": e.timer.sysctl,
            "default_seconds": e.timer.default,
        },
    }


COMMANDS = (expect,)
