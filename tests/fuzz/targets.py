"""What the fuzzer feeds: each target takes bytes the way the tool takes them from outside,
through the same code, and can say afterwards whether it still serves well-formed input."""

from __future__ import annotations

import contextlib
import io
import os
import random
import tempfile
import time

from mbtest.errors import MbtestError
from mbtest.middlebox.base import NFQUEUE
from mbtest.middlebox.catalog import CATALOG
from mbtest.middlebox.flows import FlowTracker
from mbtest.middlebox.handler import PacketHandler
from mbtest.middlebox.log import Log
from mbtest.middlebox.observer import KernelObserver
from mbtest.middlebox.spec import MiddleboxSpec
from mbtest.mptcp.options import MpCapable
from mbtest.observe import timeline, verify
from mbtest.observe.decode import decode_capture
from mbtest.packet.ip import locate
from mbtest.packet.pcap import frames_from
from mbtest.packet.quote import View
from mbtest.probe import engine, wire
from mbtest.probe.diff import diff
from mbtest.probe.rawio import read_arrival
from mbtest.probe.result import probe_result
from tests.fuzz import seeds


def behaviour_specs() -> list[str]:
    """Every userspace behaviour, with its defaults and with each cell's parameters."""
    out = []
    for name, cls in CATALOG.items():
        if cls.ENGINE != NFQUEUE:
            continue
        out.append(name)
        out += [f"{name}:{cell.params}" for cell in cls.CELLS if cell.params]
    return sorted(set(out))


class BehaviourTarget:
    """A userspace behaviour's packet handler, as the engine runs it (ticks included)."""

    def __init__(self, spec: str):
        self.name = f"middlebox {spec}"
        self.spec = MiddleboxSpec.parse(spec)
        self.handler = PacketHandler(self.spec.build())
        self.fed = 0

    def feed(self, data: bytes) -> None:
        outcome = self.handler(data)
        for forged in outcome.inject:  # the engine checks each before sending it
            with contextlib.suppress(MbtestError):
                locate(forged)
        self.fed += 1
        if self.fed % 64 == 0:
            self.handler.tick(time.monotonic() + 10)

    def serving(self, packets: list[bytes]) -> bool:
        """A fresh handler and the fuzzed one decide alike on new well-formed flows."""
        fresh = PacketHandler(self.spec.build())
        for packet in packets:
            a, b = fresh(packet), self.handler(packet)
            if (a.action, a.malformed) != (b.action, b.malformed):
                return False
        return True


class ObserverTarget:
    """The kernel observer's two parsers: packets coming in (queued) and going out."""

    name = "kernel observer"

    def __init__(self) -> None:
        self.dir = tempfile.TemporaryDirectory()
        self.log = Log(os.path.join(self.dir.name, "log.jsonl"), "fuzz")
        self.observer = KernelObserver(self.log, FlowTracker(), {"client": "x", "server": "y"})
        self.turn = 0

    def feed(self, data: bytes) -> None:
        self.turn += 1
        if self.turn % 2:
            self.observer.before(data)
        else:
            self.observer.after(data)

    def serving(self, packets: list[bytes]) -> bool:
        before = self.log.count
        for packet in packets:
            self.observer.before(packet)
            changed = bytearray(packet)
            changed[-1] ^= 0xFF  # the last byte: payload or an option
            self.observer.after(bytes(changed))
        return self.log.count > before

    def close(self) -> None:
        self.log.close()
        self.dir.cleanup()


class ProbeTarget:
    """The probe's handling of what comes back: ICMP errors and their quotes, the target's
    TCP answers, and the result built from them (diffs, descriptions, the destination)."""

    name = "probe replies and quotes"

    def __init__(self, version: int):
        src, dst = seeds.V4 if version == 4 else seeds.V6
        self.version = version
        options = wire.options_bytes([wire.mss(1400), MpCapable(version=1)])
        segment = wire.Segment(src, dst, 40000, 80, 1000, 0, "S", options=options)
        self.sweep = engine.Sweep(segment, 10, random.Random(1))
        self.sent = [self.sweep.packet(ttl) for ttl in range(1, 11)]
        self.router, self.target = dst.replace("9", "5"), dst
        self.fed = 0
        self.malformed = 0

    def seeds(self) -> list[tuple[bool, bytes]]:
        """(ICMP?, bytes): errors quoting the probe's own packets, and the target's answers."""
        answers = [p for p in seeds.tcp_packets() if (p[0] >> 4) == self.version]
        if self.version == 6:
            answers = [p[40:] for p in answers]  # an IPv6 raw socket gives no IP header
        errors = seeds.icmp_errors(self.sent)
        if self.version == 4:
            errors = [bytes(20) + e for e in errors]  # a raw IPv4 socket gives the IP header
            errors = [bytes([0x45]) + e[1:] for e in errors]
        return [(True, e) for e in errors] + [(False, a) for a in answers]

    def feed(self, data: bytes, icmp: bool = True) -> None:
        source = self.target if not icmp or self.fed % 3 == 0 else self.router
        arrival = read_arrival(icmp, data, source, self.version, time.monotonic())
        if arrival is not None:
            if arrival.malformed is not None:
                self.malformed += 1
            self.sweep.feed(arrival)
            if arrival.icmp is not None:
                quote = View(arrival.icmp.quote)
                quote.quote_class(), quote.tsval(), quote.tcp_fields(), quote.payload
                diff(View(self.sent[0]), quote)
        self.fed += 1
        if self.fed % 500 == 0:
            self.result()
            self.malformed += len(self.sweep.malformed)
            self.sweep.answers.clear()
            self.sweep.replies.clear()
            self.sweep.malformed.clear()

    def result(self) -> dict:
        return probe_result("fuzz", "fuzz", self.sweep, [], 0.0)

    def serving(self, packets: list[bytes]) -> bool:
        self.sweep.answers.clear()
        for icmp, data in self.seeds():
            if icmp:
                self.feed(data, icmp=True)
        return len(self.sweep.answers) >= 1 and self.result()["hops"] != []


class CaptureTarget:
    """A capture file through the reader, the decoder, the timelines and the crypto checks."""

    name = "capture reader and decoder"

    def feed(self, data: bytes) -> None:
        try:
            frames = frames_from(io.BytesIO(data), "fuzz.pcap")
            records = list(decode_capture(frames, only_mptcp=False, keep_segments=True))
        except MbtestError:
            return
        for record in records:
            record.to_json()
        timeline.build(records)
        verify.verify(records)

    def serving(self, files: list[bytes]) -> bool:
        for data in files:
            frames = frames_from(io.BytesIO(data), "seed.pcap")
            if not list(decode_capture(frames, only_mptcp=True)):
                return False
        return True
