"""What every cell process would otherwise load or compute anew, done once in the fork
server the cells are forked from (see workers): the cell's code, the middlebox's code (a
middlebox is forked from its cell), and the versions of the tools (a subprocess each)."""

from mbtest.experiment import cell  # noqa: F401
from mbtest.host import environment
from mbtest.middlebox import __main__ as middlebox_main  # noqa: F401

environment.versions()
