"""The ``mbtest`` group and its entry point: every MbtestError is one line on stderr and a
non-zero exit; SIGINT and SIGTERM tear down what the command built."""

from __future__ import annotations

import os
import sys
import traceback

import click

from mbtest import __version__
from mbtest.cli import (
    decode,
    expect,
    kernel,
    matrix,
    middlebox,
    probe,
    report,
    run,
    serve,
    system,
    topo,
)
from mbtest.errors import HARNESS, INTERRUPTED, OK, USAGE, Interrupted, MbtestError, Terminated
from mbtest.host import signals


@click.group(
    context_settings={"help_option_names": ["-h", "--help"]},
    epilog="""\b
Examples:
  sudo mbtest matrix                    the default matrix, ending in an HTML report
  sudo mbtest run --cell coalesce-across-mappings
  sudo mbtest probe 192.0.2.1 --probe mp_capable
  mbtest decode capture.pcap
  mbtest middlebox ls; mbtest expect ls; mbtest topo ls

Exit status (every command): 0 nothing to report, 1 findings (--no-fail: 0), 2 usage error,
3 harness error, 130/143 interrupted (SIGINT/SIGTERM).
Shell completion: eval "$(_MBTEST_COMPLETE=bash_source mbtest)" (zsh_source, fish_source).""",
)
@click.version_option(__version__, prog_name="mbtest")
def cli() -> None:
    """Find out what middleboxes do to Multipath TCP, and whether MPTCP endpoints react as
    RFC 8684 says."""


for module in (decode, system, topo, kernel, middlebox, expect, run, matrix, report, probe, serve):
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
    if "_MBTEST_COMPLETE" in os.environ:  # shell completion: click answers and exits
        cli.main(prog_name="mbtest")
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
    except click.ClickException as e:  # usage errors (click's own exit 1 included)
        e.show()
        sys.exit(USAGE)
    except click.exceptions.Abort:
        click.echo("mbtest: interrupted", err=True)
        sys.exit(INTERRUPTED)
    except KeyboardInterrupt:
        click.echo("mbtest: interrupted", err=True)
        sys.exit(INTERRUPTED)
    except BrokenPipeError:
        sys.exit(OK)
    except Exception:  # a bug: the traceback, and the harness-error status (never 1)
        traceback.print_exc()
        click.echo(
            "mbtest: internal error (a bug in mbtest: the traceback above says where)", err=True
        )
        sys.exit(HARNESS)
