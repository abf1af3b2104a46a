"""Output places checked before any work starts: a result that cannot be written is one
sentence at once, not a lost measurement at the end."""

from __future__ import annotations

import os

from mbtest.errors import MbtestError


class OutputError(MbtestError):
    """A place mbtest was told to write to that it cannot write to."""


def output_file(path: str, option: str) -> str:
    """A file mbtest may create or replace: not a directory, in a writable directory."""
    if os.path.isdir(path):
        raise OutputError(f"{option} {path} is a directory: give a file name")
    folder = os.path.dirname(os.path.abspath(path))
    if not os.path.isdir(folder):
        raise OutputError(f"{option} {path}: the directory {folder} does not exist")
    if not os.access(folder, os.W_OK) or (os.path.exists(path) and not os.access(path, os.W_OK)):
        raise OutputError(f"{option} {path} is not writable")
    return path


def output_dir(path: str, option: str) -> str:
    """A directory mbtest may create or fill: not a file, creatable, writable."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise OutputError(f"{option} {path} is a file, not a directory")
    parent = path
    while not os.path.exists(parent):  # the nearest existing ancestor must be writable
        parent = os.path.dirname(os.path.abspath(parent))
    if not os.access(parent, os.W_OK):
        raise OutputError(f"{option} {path} cannot be created or written here")
    return path
