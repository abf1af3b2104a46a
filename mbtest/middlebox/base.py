"""What every behaviour is: typed parameters, documentation, a verdict per packet, a log.

A userspace behaviour is pure: ``handle`` takes a packet and its flow context and returns a
Verdict (accept, modified, drop, inject) with the changes it made, so it can be tested on
bytes alone. A kernel behaviour returns the netfilter rules that make Linux do the work.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mbtest.middlebox.flows import PacketContext
from mbtest.middlebox.params import Param, bind
from mbtest.mptcp.options import Subtype
from mbtest.packet.edit import OptionSpan, TcpPacket

SUBTYPE_CHOICES = (
    "MP_CAPABLE", "MP_JOIN", "DSS", "ADD_ADDR", "ADD_ADDR_ECHO", "REMOVE_ADDR", "MP_PRIO",
    "MP_FAIL", "MP_FASTCLOSE", "MP_TCPRST", "MP_EXPERIMENTAL", "ALL",
)  # fmt: skip
DIRECTIONS = ("c2s", "s2c", "both")


@dataclass
class Verdict:
    action: str = "accept"  # accept, modified, drop
    packet: bytes | None = None  # the modified packet
    inject: list[bytes] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)


ACCEPT = Verdict()


def span_matches(raw: bytes, span: OptionSpan, subtypes: tuple[str, ...]) -> bool:
    """Whether an option is one of the chosen MPTCP subtypes (ADD_ADDR_ECHO: echoes only)."""
    subtype = span.subtype(raw)
    if subtype is None:
        return False
    if "ALL" in subtypes:
        return True
    if subtype == Subtype.ADD_ADDR:
        echo = bool(raw[span.start + 2] & 1)
        return ("ADD_ADDR_ECHO" if echo else "ADD_ADDR") in subtypes
    try:
        return Subtype(subtype).name in subtypes
    except ValueError:
        return False


_ARROWS = {"c2s": "c>s", "s2c": "s>c"}


def direction_matches(wanted: str, direction: str) -> bool:
    return wanted == "both" or _ARROWS[wanted] == direction


def change(
    ctx: PacketContext, pkt: TcpPacket, field_name: str, before: Any, after: Any
) -> dict[str, Any]:
    """One ground-truth log entry."""
    return {
        "flow": ctx.flow_name,
        "direction": ctx.direction,
        "packet": ctx.index,
        "seq": pkt.seq,
        "flags": pkt.flags,
        "field": field_name,
        "before": before.hex() if isinstance(before, (bytes, bytearray)) else before,
        "after": after.hex() if isinstance(after, (bytes, bytearray)) else after,
    }


class Behaviour:
    NAME: ClassVar[str]
    ENGINE: ClassVar[str] = "nfqueue"  # or "kernel"
    MODELS: ClassVar[str]  # the real middlebox it stands for
    DOES: ClassVar[str]  # what it does to packets
    EXPECTED: ClassVar[str]  # the endpoint reaction RFC 8684 expects
    RFC: ClassVar[str]
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    TICK: ClassVar[float | None] = None  # seconds between calls to tick(), for held packets
    CHAIN: ClassVar[str] = "FORWARD"  # PREROUTING for behaviours whose changes must re-route
    PASSIVE: ClassVar[bool] = False  # changes nothing by design (triggered = saw packets)
    BOTH_WAYS: ClassVar[bool] = False  # needs both directions whatever its direction parameter

    def queued_direction(self) -> str:
        """c2s, s2c or both: which way packets must be queued (fewer is faster)."""
        if self.BOTH_WAYS:
            return "both"
        return self.params.get("direction", "both")

    def __init__(self, params: dict[str, Any] | None = None):
        self.params = bind(self.NAME, self.PARAMS, params or {})
        for name, value in self.params.items():  # plain attributes: read on every packet
            setattr(self, name, value)

    @property
    def spec(self) -> str:
        def text(v: Any) -> str:
            return "+".join(v) if isinstance(v, tuple) else str(v)

        return self.NAME + (
            ":" + ",".join(f"{k}={text(v)}" for k, v in self.params.items()) if self.params else ""
        )

    def queue_matches(self) -> list[list[str]]:
        """iptables match arguments selecting the packets to queue (each list is one rule)."""
        return [[]]

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:  # pragma: no cover
        return ACCEPT

    def native_args(self) -> list[str] | None:
        """The native fast path's options for this behaviour, if it implements it (the
        Python ``handle`` stays the reference the tests compare it with)."""
        return None

    def tick(self, now: float) -> Verdict:
        """Called every TICK seconds: release what a behaviour holds (injections, log)."""
        return ACCEPT

    def kernel_rules(self, sides: dict[str, str]) -> list[list[str]]:
        """For kernel behaviours: iptables arguments (after the command), given the slot's
        interface names toward the client and the server."""
        return []
