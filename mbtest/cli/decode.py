"""mbtest decode: the MPTCP options of every packet in a capture file."""

from __future__ import annotations

import sys

import click

from mbtest import jsondoc


@click.command()
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
            out.write(jsondoc.dumps(record.to_json()) + "\n")
        return
    from mbtest.cli.ui import print_decoded

    print_decoded(records, title=capture)


COMMANDS = (decode,)
