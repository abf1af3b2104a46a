"""Command line: one module per command group, parsing and printing only; the work is done
by the layers below. ``python -m mbtest.cli`` and the ``mbtest`` script both run ``main``,
which installs the signal handlers before anything heavy is imported."""

from __future__ import annotations

import sys


def main() -> None:
    from mbtest.errors import Stopped
    from mbtest.host import signals

    signals.install()
    try:
        from mbtest.cli.app import main as run
    except Stopped as e:  # stopped while starting: nothing was created yet
        print(f"mbtest: {e}; everything this run created was removed", file=sys.stderr)
        sys.exit(e.exit_code)
    run()
