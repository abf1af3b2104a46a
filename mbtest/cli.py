"""Command line: parsing and printing only; the work is done by the modules it calls."""

from __future__ import annotations

import datetime
import json
import os
import signal
import sys

import click

from mbtest import __version__
from mbtest.errors import MbtestError


class Terminated(MbtestError):
    """SIGTERM: raised in the main thread so that every owner tears down what it made."""

    exit_code = 143


def _on_sigterm(signum, frame) -> None:
    raise Terminated("terminated by SIGTERM; everything this run created was removed")


def new_report_dir(base: str = "reports") -> str:
    """reports/<timestamp>/, with reports/latest pointing at it."""
    stamp = datetime.datetime.now().strftime("%Y%m%d-%H%M%S")
    path = os.path.join(base, stamp)
    n = 1
    while os.path.exists(path):
        n += 1
        path = os.path.join(base, f"{stamp}-{n}")
    os.makedirs(path)
    latest = os.path.join(base, "latest")
    if os.path.islink(latest) or not os.path.exists(latest):
        tmp = latest + ".tmp"
        if os.path.lexists(tmp):
            os.unlink(tmp)
        os.symlink(os.path.basename(path), tmp)
        os.replace(tmp, latest)
    return path


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


@cli.command()
@click.option("-6", "ipv6", is_flag=True, help="Run the exchange over IPv6.")
@click.option("--checksum/--no-checksum", default=True, show_default=True, help="DSS checksums.")
@click.option(
    "--size",
    default=200_000,
    show_default=True,
    type=click.IntRange(1, 1 << 30),
    help="Bytes sent client to server (half as many back).",
)
@click.option("-o", "--out", "out_dir", default=None, help="Directory for the results.")
def demo(ipv6: bool, checksum: bool, size: int, out_dir: str | None) -> None:
    """Run the main job: a real two-path MPTCP exchange, captured, decoded and verified."""
    from mbtest.selfcheck import run_selfcheck
    from mbtest.ui import print_selfcheck

    out_dir = out_dir or new_report_dir()
    document = run_selfcheck(out_dir, ip_version=6 if ipv6 else 4, checksums=checksum, size=size)
    print_selfcheck(document, out_dir)
    if not document["ok"]:
        sys.exit(1)


@cli.command()
def cleanup() -> None:
    """Remove namespaces and processes that a killed run left behind."""
    from mbtest.cleanup import cleanup as do_cleanup

    removed = do_cleanup()
    for line in removed:
        click.echo(f"removed {line}")
    if not removed:
        click.echo("nothing to remove")


def main() -> None:
    """Entry point: every MbtestError is one line on stderr and a non-zero exit."""
    signal.signal(signal.SIGTERM, _on_sigterm)
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
