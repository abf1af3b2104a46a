"""The ``mbtest`` group and its entry point: every MbtestError is one line on stderr and a
non-zero exit; SIGINT and SIGTERM tear down what the command built."""

from __future__ import annotations

import os
import sys

import click

from mbtest import __version__
from mbtest.cli import decode, matrix, middlebox, probe, report, run, system, topo
from mbtest.errors import Interrupted, MbtestError, Terminated
from mbtest.host import signals


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mbtest")
def cli() -> None:
    """Find out what middleboxes do to Multipath TCP."""


for module in (decode, system, topo, middlebox, run, matrix, report, probe):
    for command in module.COMMANDS:
        cli.add_command(command)


def _what_is_left() -> str:
    """After a signal: whether everything this run (and the cells it started) created is
    gone, checked rather than assumed."""
    try:  # (an import the signal cut short may fail here: then say so)
        from mbtest.host import cleanup, owners

        left = cleanup.left_by({os.getpid(), *owners.CHILDREN})
    except Exception as e:  # the check itself failed: say so rather than claim anything
        return f"could not check what is left ({type(e).__name__}); run mbtest cleanup"
    if not left:
        return "everything this run created was removed"
    return f"left behind: {', '.join(left[:5])} (mbtest cleanup removes it)"


def main() -> None:
    """Entry point: every MbtestError is one line on stderr and a non-zero exit."""
    try:
        try:
            # not cli.main(): it would turn a signal's KeyboardInterrupt into its own Abort
            with cli.make_context("mbtest", sys.argv[1:]) as ctx:
                cli.invoke(ctx)
        finally:
            signals.done()  # all owned things are released: a late signal changes nothing
    except click.exceptions.Exit as e:  # --help, --version
        sys.exit(e.exit_code)
    except (Interrupted, Terminated) as e:
        click.echo(f"mbtest: {e}; {_what_is_left()}", err=True)
        sys.exit(e.exit_code)
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
