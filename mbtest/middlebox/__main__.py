"""The middlebox process, started by the testbed inside a slot's namespace:

    python -m mbtest.middlebox SPEC --queue N --log FILE --client-side IF --server-side IF

It prints ``ready`` once every rule is in place; any failure is one line on stderr and a
non-zero exit, which the testbed reports as "middlebox crashed: ...".
"""

from __future__ import annotations

import argparse
import os
import signal
import sys

from mbtest.errors import MbtestError
from mbtest.middlebox.engine import Engine
from mbtest.middlebox.log import Log
from mbtest.middlebox.spec import MiddleboxSpec


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="mbtest-middlebox")
    parser.add_argument("spec")
    parser.add_argument("--queue", type=int, default=0)
    parser.add_argument("--log", required=True)
    parser.add_argument("--client-side", default="eth0")
    parser.add_argument("--server-side", default="eth1")
    args = parser.parse_args(argv)
    engine = None
    try:
        behaviour = MiddleboxSpec.parse(args.spec).build()
        sides = {"client": args.client_side, "server": args.server_side}
        engine = Engine(behaviour, args.queue, Log(args.log, behaviour.NAME), sides)

        def on_signal(signum, frame) -> None:
            engine.stopping = True

        signal.signal(signal.SIGTERM, on_signal)
        signal.signal(signal.SIGINT, on_signal)
        wake_r, wake_w = os.pipe()  # a signal makes it readable: the serving loop stops at once
        os.set_blocking(wake_w, False)
        signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
        engine.wakeup = wake_r
        engine.start()
        print("ready", flush=True)
        engine.serve()
        return 0
    except MbtestError as e:
        print(str(e), file=sys.stderr, flush=True)
        return 2
    except Exception as e:  # report, never a traceback
        print(f"{type(e).__name__}: {e}", file=sys.stderr, flush=True)
        return 1
    finally:
        if engine is not None:
            try:
                engine.stop()
            finally:
                engine.log.close()


if __name__ == "__main__":
    sys.exit(main())
