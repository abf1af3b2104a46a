"""A signal's exception raised where Python cannot propagate it (a finalizer, a weakref
callback) is not printed as a traceback: the signal is kept, and the next checkpoint
raises it; any other such exception still reaches the default hook."""

import subprocess
import sys

SCRIPT = """
import gc
from mbtest.errors import Interrupted
from mbtest.host import signals
signals.install()
signals._received = 2  # (as the handler records it before raising)
class Finalized:
    def __del__(self):
        raise Interrupted("interrupted")
item = Finalized()
del item
gc.collect()
try:
    signals.check()
except Interrupted:
    print("raised again at the checkpoint")
class Other:
    def __del__(self):
        raise ValueError("not a signal")
item = Other()
del item
"""


def test_a_signal_lost_in_a_finalizer_is_not_printed_and_is_raised_again():
    run = subprocess.run([sys.executable, "-c", SCRIPT], capture_output=True, text=True, timeout=60)
    assert run.stdout.strip() == "raised again at the checkpoint"
    assert "Interrupted" not in run.stderr  # (no "Exception ignored ... Traceback")
    assert "ValueError: not a signal" in run.stderr  # the default hook still says the rest


HAND_OVER = """
import os, signal
from mbtest.errors import Terminated
from mbtest.host import signals
from mbtest.testbed import topology
from mbtest.testbed.builder import Testbed
signals.install()
bed = Testbed(topology.load("single-path"))
signals._received = signal.SIGTERM  # (a signal that came while the testbed was built)
try:
    bed.hand_over()
except Terminated:
    print("not handed over:", bed.persistent)
signals._received = None
bed.hand_over()
os.kill(os.getpid(), signal.SIGTERM)  # after the hand-over: the command is done
print("handed over:", bed.persistent)
"""


def test_a_testbed_is_handed_over_only_before_any_signal_and_none_undoes_it():
    run = subprocess.run(
        [sys.executable, "-c", HAND_OVER], capture_output=True, text=True, timeout=60
    )
    assert run.stdout.split("\n")[:2] == ["not handed over: False", "handed over: True"], (
        run.stdout + run.stderr
    )
