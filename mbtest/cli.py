"""Command line: parsing and printing only; the work is done by the modules it calls."""

from __future__ import annotations

import json
import sys

import click

from mbtest import __version__
from mbtest.errors import MbtestError


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="mbtest")
def cli() -> None:
    """Find out what middleboxes do to Multipath TCP."""


@cli.command()
@click.argument("capture", type=click.Path(dir_okay=True, path_type=str))
@click.option("--json", "as_json", is_flag=True, help="One JSON object per packet.")
@click.option(
    "--all", "all_packets", is_flag=True, help="Also list TCP packets without MPTCP options."
)
def decode(capture: str, as_json: bool, all_packets: bool) -> None:
    """Print every packet's MPTCP options from a pcap or pcapng CAPTURE."""
    from mbtest.observe.decode import decode_capture

    records = decode_capture(capture, only_mptcp=not all_packets)
    if as_json:
        out = sys.stdout
        for record in records:
            out.write(json.dumps(record.to_json()) + "\n")
        return
    from mbtest.ui import print_decoded

    print_decoded(records, title=capture)


def main() -> None:
    """Entry point: every MbtestError is one line on stderr and a non-zero exit."""
    try:
        cli.main(standalone_mode=False)
    except MbtestError as e:
        click.echo(f"mbtest: {e}", err=True)
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("mbtest: interrupted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        e.show()
        sys.exit(e.exit_code)
    except KeyboardInterrupt:
        click.echo("mbtest: interrupted", err=True)
        sys.exit(130)
    except BrokenPipeError:
        sys.exit(0)


if __name__ == "__main__":
    main()
