"""Run the fuzzer: mutated packets spread over every userspace behaviour, the kernel observer
and the probe's reply and quote handling, then mutated capture files through the reader.

    python -m tests.fuzz.run --packets 1000000 --captures 100000 [--seed N]

Prints its counts as JSON: packets and files fed per target, the project's own errors by
class (expected: that is how bad input is reported), exceptions of any other kind (each a
finding, with a reproducer), and whether every target still served well-formed input after.
Exits 1 if any foreign exception was raised or a target stopped serving.
"""

from __future__ import annotations

import argparse
import json
import random
import sys
import time
import traceback
from collections import Counter

from mbtest.errors import MbtestError
from tests.fuzz import mutate, seeds
from tests.fuzz.targets import (
    BehaviourTarget,
    CaptureTarget,
    ObserverTarget,
    ProbeTarget,
    behaviour_specs,
)


def serving_packets() -> list[bytes]:
    """Well-formed packets on flows the fuzzing never touched (other ports)."""
    out = []
    for packet in seeds.tcp_packets():
        raw = bytearray(packet)
        ihl = (raw[0] & 0x0F) * 4 if raw[0] >> 4 == 4 else 40
        raw[ihl] = 0xC3  # source port high byte: 50000 and up
        from mbtest.packet.edit import TcpPacket

        out.append(TcpPacket(bytes(raw)).to_bytes())
    return out


def run(packets: int, captures: int, seed: int) -> dict:
    rng = random.Random(seed)
    tcp_seeds = seeds.tcp_packets()
    targets = [BehaviourTarget(spec) for spec in behaviour_specs()]
    observer = ObserverTarget()
    probes = [ProbeTarget(4), ProbeTarget(6)]
    fed: Counter = Counter()
    own: Counter = Counter()
    foreign: list[dict] = []
    kinds: Counter = Counter()

    def attempt(name: str, fn, data: bytes) -> None:
        fed[name] += 1
        try:
            fn(data)
        except MbtestError as e:
            own[type(e).__name__] += 1
        except Exception as e:
            if len(foreign) < 20:
                foreign.append(
                    {
                        "target": name,
                        "error": f"{type(e).__name__}: {e}",
                        "input": data.hex(),
                        "trace": traceback.format_exc(limit=4),
                    }
                )
            else:
                foreign.append({"target": name, "error": f"{type(e).__name__}: {e}"})

    started = time.monotonic()
    all_targets = len(targets) + 1 + len(probes)
    for i in range(packets):
        slot = i % all_targets
        if slot < len(targets):
            target = targets[slot]
            data = mutate.packet(rng, rng.choice(tcp_seeds), tcp_seeds)
            attempt(target.name, target.feed, data)
        elif slot == len(targets):
            data = mutate.packet(rng, rng.choice(tcp_seeds), tcp_seeds)
            attempt(observer.name, observer.feed, data)
        else:
            probe = probes[slot - len(targets) - 1]
            icmp, base = rng.choice(probe_seeds[probe.version])
            data = mutate.packet(rng, base, []) if not icmp else icmp_mutation(rng, base)
            kinds["ICMP" if icmp else "TCP"] += 1
            attempt(f"{probe.name} (IPv{probe.version})",
                    lambda d, p=probe, c=icmp: p.feed(d, icmp=c), data)  # fmt: skip
    packet_seconds = time.monotonic() - started
    capture_target = CaptureTarget()
    capture_seeds = seeds.captures()
    started = time.monotonic()
    for _ in range(captures):
        data = mutate.capture(rng, rng.choice(capture_seeds))
        attempt(capture_target.name, capture_target.feed, data)
    capture_seconds = time.monotonic() - started
    good = serving_packets()
    serving = {t.name: t.serving(good) for t in targets}
    serving[observer.name] = observer.serving(good)
    for probe in probes:
        serving[f"{probe.name} (IPv{probe.version})"] = probe.serving(good)
    serving[capture_target.name] = capture_target.serving(capture_seeds)
    malformed = {t.name: t.handler.malformed for t in targets}
    malformed[observer.name] = observer.observer.malformed
    for probe in probes:
        malformed[f"{probe.name} (IPv{probe.version})"] = probe.malformed
    observer.close()
    return {
        "seed": seed,
        "packets": sum(v for k, v in fed.items() if k != capture_target.name),
        "packets_by_kind": {"IPv4/IPv6 TCP": packets - sum(kinds.values()), **kinds},
        "captures": fed[capture_target.name],
        "targets": len(fed),
        "fed": dict(sorted(fed.items())),
        "own_errors": dict(own),
        "malformed_seen": malformed,  # inputs each target reported as malformed and survived
        "foreign_exceptions": len(foreign),
        "findings": foreign[:20],
        "serving_after": serving,
        "all_serving": all(serving.values()),
        "seconds": {"packets": round(packet_seconds, 1), "captures": round(capture_seconds, 1)},
    }


probe_seeds = {4: ProbeTarget(4).seeds(), 6: ProbeTarget(6).seeds()}


def icmp_mutation(rng: random.Random, base: bytes) -> bytes:
    """Mutate the ICMP header or, more often, the packet it quotes."""
    v4 = len(base) > 20 and base[0] == 0x45 and base[9] in (0, 1)
    head = 28 if v4 else 8
    if rng.random() < 0.25:
        return mutate.packet(rng, base, [])
    return base[:head] + mutate.packet(rng, base[head:], [])


def main() -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.fuzz.run")
    parser.add_argument("--packets", type=int, default=1_000_000)
    parser.add_argument("--captures", type=int, default=100_000)
    parser.add_argument("--seed", type=int, default=None)
    parser.add_argument("--output", default=None, help="Also write the counts here (JSON).")
    args = parser.parse_args()
    seed = args.seed if args.seed is not None else random.randrange(1 << 32)
    result = run(args.packets, args.captures, seed)
    text = json.dumps(result, indent=2)
    print(text)
    if args.output:
        with open(args.output, "w") as f:
            f.write(text)
    return 0 if result["foreign_exceptions"] == 0 and result["all_serving"] else 1


if __name__ == "__main__":
    sys.exit(main())
