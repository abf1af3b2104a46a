"""What every behaviour is: typed parameters, documentation, what it asks of the engine, a
verdict per packet, a log, and the matrix cells it brings.

A userspace behaviour is pure: ``handle`` takes a packet and its flow context and returns a
Verdict (accept, modified, drop, inject) with the changes it made, so it can be tested on
bytes alone. A kernel behaviour returns the netfilter rules that make Linux do the work.
Everything the engine may do for a behaviour is declared here, with its default; the engine
reads nothing else.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, ClassVar

from mbtest.middlebox.flows import PacketContext
from mbtest.middlebox.params import Param, bind
from mbtest.mptcp.options import Subtype
from mbtest.packet.edit import OptionSpan, TcpPacket

SUBTYPE_CHOICES = (
    "MP_CAPABLE",
    "MP_JOIN",
    "DSS",
    "ADD_ADDR",
    "ADD_ADDR_ECHO",
    "REMOVE_ADDR",
    "MP_PRIO",
    "MP_FAIL",
    "MP_FASTCLOSE",
    "MP_TCPRST",
    "MP_EXPERIMENTAL",
    "ALL",
)
DIRECTIONS = ("c2s", "s2c", "both")

# How a behaviour works; the engine sets it up accordingly.
NFQUEUE = "nfqueue"  # packets queued to userspace, handled by ``handle``
KERNEL = "kernel"  # netfilter does the work (``kernel_rules``)
PROXY = "proxy"  # TPROXY diverts connections to a relay in the slot (``relay_port``)
ENGINES = (NFQUEUE, KERNEL, PROXY)


@dataclass
class Verdict:
    action: str = "accept"  # accept, modified, drop
    packet: bytes | None = None  # the modified packet
    inject: list[bytes] = field(default_factory=list)
    changes: list[dict[str, Any]] = field(default_factory=list)


ACCEPT = Verdict()


@dataclass(frozen=True)
class Cell:
    """A matrix cell a behaviour brings: where it goes, how it is set, what the RFC expects.

    ``params`` is the behaviour's parameters as written after its name (``segments=syn``),
    ``params6`` their IPv6 form where an address differs; ``expect`` names an expectation of
    ``mbtest.verdict`` (a unit test checks it exists). ``conditions`` override the
    scenario's defaults: other data (text, port, sizes), or run conditions an expectation
    needs (hold, sysctls, announce). ``ip_versions`` narrows the behaviour's own.
    """

    name: str
    expect: str
    params: str = ""
    topology: str = "single-path"
    slot: str = "slot"
    checksums: bool = False
    conditions: dict[str, Any] = field(default_factory=dict)
    params6: str | None = None
    ip_versions: tuple[int, ...] | None = None


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
        "segment": sorted(ctx.classes - {"all"}),  # syn, first (after the handshake), data...
        "payload": pkt.payload_length,
        "field": field_name,
        "before": before.hex() if isinstance(before, (bytes, bytearray)) else before,
        "after": after.hex() if isinstance(after, (bytes, bytearray)) else after,
    }


class Behaviour:
    """One middlebox behaviour. Subclasses with a NAME are found by the catalog."""

    NAME: ClassVar[str]
    ENGINE: ClassVar[str] = NFQUEUE
    MODELS: ClassVar[str]  # the real middlebox it stands for
    DOES: ClassVar[str]  # what it does to packets
    EXPECTED: ClassVar[str]  # the endpoint reaction RFC 8684 expects
    RFC: ClassVar[str]
    PARAMS: ClassVar[tuple[Param, ...]] = ()
    CELLS: ClassVar[tuple[Cell, ...]] = ()  # its cells in the default matrix
    IP_VERSIONS: ClassVar[tuple[int, ...]] = (4, 6)  # where it exists (IPv4 ID: IPv4 only)
    TOUCHES_TRAFFIC: ClassVar[bool] = True  # False: only the node's own ICMP errors (no cell)

    # --- what it asks of the engine (NFQUEUE behaviours) -------------------------------------
    TICK: ClassVar[float | None] = None  # seconds between calls to tick(), for held packets
    CHAIN: ClassVar[str] = "FORWARD"  # PREROUTING for behaviours whose changes must re-route
    BOTH_WAYS: ClassVar[bool] = False  # needs both directions whatever its direction parameter
    PASSIVE: ClassVar[bool] = False  # changes nothing by design (triggered = saw packets)
    NEEDS_EGRESS_MTU: ClassVar[bool] = False  # told the server side's MTU (egress_mtu)

    # --- what it asks of the engine (kernel behaviours) --------------------------------------
    OBSERVE: ClassVar[bool] = False  # log the kernel's changes, packets before vs after
    CONNTRACK_LOG: ClassVar[bool] = False  # log address/port rewrites from conntrack events
    SYSCTLS: ClassVar[dict[str, str]] = {}  # written in the slot before the rules

    egress_mtu: int = 1500  # set by the engine when NEEDS_EGRESS_MTU

    def __init__(self, params: dict[str, Any] | None = None):
        self.params = bind(self.NAME, self.PARAMS, params or {})
        for name, value in self.params.items():  # plain attributes: read on every packet
            setattr(self, name, value)

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.ENGINE not in ENGINES:
            raise TypeError(f"{cls.__name__}: ENGINE must be one of {', '.join(ENGINES)}")

    @property
    def spec(self) -> str:
        def text(v: Any) -> str:
            return "+".join(v) if isinstance(v, tuple) else str(v)

        return self.NAME + (
            ":" + ",".join(f"{k}={text(v)}" for k, v in self.params.items()) if self.params else ""
        )

    def queued_direction(self) -> str:
        """c2s, s2c or both: which way packets must be queued (fewer is faster)."""
        if self.BOTH_WAYS:
            return "both"
        return self.params.get("direction", "both")

    def queue_matches(self) -> list[list[str]]:
        """iptables match arguments selecting the packets to queue (each list is one rule)."""
        return [[]]

    def handle(self, pkt: TcpPacket, ctx: PacketContext) -> Verdict:  # pragma: no cover
        return ACCEPT

    def handle_malformed(self, data: bytes, why: str) -> str:
        """What to do with a packet that is not a well-formed IP/TCP packet: ``accept`` (a
        middlebox that does not understand a packet forwards it) or ``drop``."""
        return "accept"

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

    def addresses(self) -> list[str]:
        """Addresses the slot must own on its server side (a NAT pool address)."""
        return []

    def icmp_error_rules(self, sides: dict[str, str], queue: int) -> list[tuple[str, list[str]]]:
        """(tool, arguments) of rules queueing ICMP errors to ``queue``, for a behaviour that
        rewrites them itself (``handle_icmp_error``); none by default."""
        return []

    def handle_icmp_error(self, data: bytes, inside) -> tuple[bytes | None, dict | None]:
        """An ICMP error queued by ``icmp_error_rules``: the packet to forward instead (None:
        unchanged) and a log entry. ``inside`` maps a translated (address, port) back."""
        return None, None

    def relay_port(self) -> int | None:
        """For PROXY behaviours: the local port of the relay TPROXY diverts connections to."""
        return None
