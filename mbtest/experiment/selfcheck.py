"""The kernel self-check: a real MPTCP exchange, decoded and its crypto recomputed.

It is what ``mbtest demo`` runs until the local matrix exists: it shows, on this machine,
that the kernel speaks MPTCP and that mbtest reads every option the kernel sends.
"""

from __future__ import annotations

import os
import time
from collections import Counter
from typing import Any

from mbtest import __version__, jsondoc
from mbtest.experiment.exchange import ExchangeResult, run_exchange
from mbtest.host import environment
from mbtest.observe.decode import decode_capture
from mbtest.observe.verify import Check, verify

SCHEMA = jsondoc.schema("selfcheck")


def run_selfcheck(
    out_dir: str, ip_version: int = 4, checksums: bool = True, size: int = 200_000
) -> dict[str, Any]:
    """Run the exchange into out_dir and write decoded.<side>.jsonl and selfcheck.json there."""
    started = time.time()
    result: ExchangeResult = run_exchange(
        out_dir, ip_version=ip_version, checksums=checksums, size=size
    )
    sides: dict[str, Any] = {}
    for side, pcap in result.captures.items():
        records = list(decode_capture(pcap, keep_segments=True))
        with open(os.path.join(out_dir, f"decoded.{side}.jsonl"), "w") as f:
            for r in records:
                f.write(jsondoc.dumps(r.to_json()) + "\n")
        checks: list[Check] = verify(records)
        sides[side] = {
            "pcap": os.path.basename(pcap),
            "capture": result.capture_stats.get(side, {}),
            "options": dict(Counter(o.name for r in records for o in r.options)),
            "malformed": sum(len(r.errors) for r in records),
            "checks": {
                kind: {
                    "passed": sum(c.ok for c in checks if c.kind == kind),
                    "failed": sum(not c.ok for c in checks if c.kind == kind),
                }
                for kind in sorted({c.kind for c in checks})
            },
            "failures": [c.__dict__ for c in checks if not c.ok],
            "counters": result.counters.get(side, {}),
        }
    document = {
        "schema": SCHEMA,
        "mbtest": __version__,
        "kernel": os.uname().release,
        "run_id": result.run_id,
        "ip_version": ip_version,
        "checksums": checksums,
        "bytes": size,
        "data_intact": {
            "c>s": result.sha256["c>s sent"] == result.sha256["c>s received"],
            "s>c": result.sha256["s>c sent"] == result.sha256["s>c received"],
        },
        "sha256": result.sha256,
        "steps": result.steps,
        "sides": sides,
        "started": started,
        "seconds": round(time.time() - started, 3),
        "environment": environment.host(),
    }
    document["ok"] = (
        all(document["data_intact"].values())
        and all(not s["failures"] and not s["malformed"] for s in sides.values())
        and all(s["capture"].get("dropped by kernel", 0) == 0 for s in sides.values())
    )
    with open(os.path.join(out_dir, "selfcheck.json"), "w") as f:
        f.write(jsondoc.dumps(document, indent=2))
    return document
