"""Command line: one module per command group, parsing and printing only; the work is done
by the layers below. ``python -m mbtest.cli`` and the ``mbtest`` script both run ``main``."""

from mbtest.cli.app import main

__all__ = ["main"]
