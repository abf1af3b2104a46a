"""The per-packet path of a userspace behaviour, without the queue around it: parse, track
the flow, let the behaviour decide. A packet the behaviour cannot read (the project's
PacketError or CodecError, from the headers or the options) gets the behaviour's malformed
action and a log entry saying so; nothing a packet holds can raise anything else here
without it being a bug (the fuzz tests check that)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from mbtest.errors import MbtestError
from mbtest.middlebox.base import Behaviour, Verdict
from mbtest.middlebox.flows import FlowTracker
from mbtest.packet.edit import TcpPacket


@dataclass
class Outcome:
    action: str  # accept, modified, drop
    packet: bytes | None = None  # the packet to forward instead, when modified
    inject: list[bytes] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)
    malformed: str | None = None  # why the packet could not be read


class PacketHandler:
    def __init__(self, behaviour: Behaviour):
        self.behaviour = behaviour
        self.tracker = FlowTracker()
        self.malformed = 0

    def __call__(self, data: bytes) -> Outcome:
        try:
            pkt = TcpPacket(data)
            ctx = self.tracker.observe(pkt)
            verdict: Verdict = self.behaviour.handle(pkt, ctx)
        except MbtestError as e:
            self.malformed += 1
            action = self.behaviour.handle_malformed(data, str(e))
            entry = {
                "flow": "?",
                "direction": "?",
                "field": "malformed",
                "before": str(e),
                "after": "dropped" if action == "drop" else "passed on",
            }
            return Outcome(
                "drop" if action == "drop" else "accept", changes=[entry], malformed=str(e)
            )
        return Outcome(verdict.action, verdict.packet, list(verdict.inject), list(verdict.changes))

    def tick(self, now: float) -> Outcome:
        verdict = self.behaviour.tick(now)
        return Outcome(verdict.action, None, list(verdict.inject), list(verdict.changes))
