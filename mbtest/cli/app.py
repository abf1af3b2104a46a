"""The ``mbtest`` group and its entry point: every MbtestError is one line on stderr and a
non-zero exit; SIGINT and SIGTERM tear down what the command built."""

from __future__ import annotations

import sys

import click

from mbtest import __version__
from mbtest.cli import decode, matrix, middlebox, probe, report, run, system, topo
from mbtest.errors import MbtestError
from mbtest.host import signals


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mbtest")
def cli() -> None:
    """Find out what middleboxes do to Multipath TCP."""


for module in (decode, system, topo, middlebox, run, matrix, report, probe):
    for command in module.COMMANDS:
        cli.add_command(command)


def main() -> None:
    """Entry point: every MbtestError is one line on stderr and a non-zero exit."""
    signals.install()
    try:
        cli.main(standalone_mode=False)
    except MbtestError as e:
        click.echo(f"mbtest: {e}", err=True)
        sys.exit(e.exit_code)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("mbtest: interrupted", err=True)
        sys.exit(130)
    except KeyboardInterrupt:
        click.echo("mbtest: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)
