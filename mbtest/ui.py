"""rich rendering of results for the terminal."""

from __future__ import annotations

from collections.abc import Iterable

from rich.console import Console
from rich.table import Table
from rich.text import Text

from mbtest.mptcp.fields import describe
from mbtest.observe.decode import PacketRecord


def print_decoded(
    records: Iterable[PacketRecord], title: str, console: Console | None = None
) -> int:
    """A table of MPTCP options per packet; returns the number of packets shown."""
    console = console or Console()
    table = Table(title=title, show_lines=False)
    for name in ("#", "time", "flow", "dir", "flags", "MPTCP options"):
        table.add_column(name, overflow="fold")
    start = None
    count = 0
    for r in records:
        count += 1
        start = r.time if start is None else start
        text = Text("\n".join(describe(o) for o in r.options) or ("" if r.errors else "-"))
        for error in r.errors:
            text.append(("\n" if text.plain else "") + f"malformed: {error}", style="red")
        cells = (str(r.frame), f"{r.time - start:.6f}", r.flow, r.direction, r.tcp_flags)
        table.add_row(*(Text(c) for c in cells), text)
    console.print(table)
    console.print(f"{count} packets")
    return count
