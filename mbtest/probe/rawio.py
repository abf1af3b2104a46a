"""Raw sockets for one address family: send packets exactly as built, read back every ICMP
error and every TCP segment that arrives, each with its arrival time.

Raw IP sockets filter by protocol in the kernel, so a busy host does not flood the engine;
replies are read with deadlines only (select), never with a blocking read.
"""

from __future__ import annotations

import select
import socket
import time
from dataclasses import dataclass

from mbtest.errors import EnvironmentProblem, PacketError
from mbtest.packet.headers import TcpSegment, parse_tcp, parse_tcp_segment
from mbtest.packet.quote import IcmpError, parse_icmp, strip_ipv4_header
from mbtest.probe.guard import MARK

SO_MARK = 36


@dataclass(frozen=True)
class Arrival:
    """One packet read: an ICMP error or a TCP segment, with when it arrived."""

    time: float
    icmp: IcmpError | None = None
    tcp: TcpSegment | None = None
    malformed: str | None = None  # a TCP packet that could not be read: why
    source: str | None = None  # (for a malformed one) who sent it


def read_arrival(icmp: bool, data: bytes, source: str, version: int, now: float) -> Arrival | None:
    """What one packet read from a raw socket is: an ICMP error, a TCP segment, or a malformed
    packet saying why (None for anything else, such as an ICMP echo)."""
    if icmp:
        message = strip_ipv4_header(data) if version == 4 else data
        error = parse_icmp(message, source, version)
        return None if error is None else Arrival(now, icmp=error)
    try:
        # (an IPv6 raw socket gives the segment without its IP header)
        segment = parse_tcp(data) if version == 4 else parse_tcp_segment(data, 6, source, "")
    except PacketError as e:
        return Arrival(now, malformed=str(e), source=source)
    return None if segment is None else Arrival(now, tcp=segment)


class RawSockets:
    def __init__(self, version: int):
        self.version = version
        family = socket.AF_INET if version == 4 else socket.AF_INET6
        icmp = socket.IPPROTO_ICMP if version == 4 else socket.IPPROTO_ICMPV6
        try:
            self.sender = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_RAW)
            self.icmp = socket.socket(family, socket.SOCK_RAW, icmp)
            self.tcp = socket.socket(family, socket.SOCK_RAW, socket.IPPROTO_TCP)
        except PermissionError:
            raise EnvironmentProblem("probing needs root (raw sockets): run it with sudo") from None
        self.sender.setsockopt(socket.SOL_SOCKET, SO_MARK, MARK)
        for sock in (self.icmp, self.tcp):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            sock.setblocking(False)

    def send(self, packet: bytes, dst: str) -> float:
        """Send one packet; returns when it left (monotonic seconds)."""
        sent_at = time.monotonic()
        self.sender.sendto(packet, (dst, 0))
        return sent_at

    def receive(self, until: float) -> list[Arrival]:
        """Everything that arrives before `until` (monotonic), returning at the first batch."""
        out: list[Arrival] = []
        while not out:
            left = until - time.monotonic()
            if left <= 0:
                return out
            ready, _, _ = select.select([self.icmp, self.tcp], [], [], left)
            for sock in ready:
                out += self._drain(sock)
        return out

    def poll(self) -> list[Arrival]:
        """What has arrived already, without waiting."""
        return self._drain(self.icmp) + self._drain(self.tcp)

    def _drain(self, sock: socket.socket) -> list[Arrival]:
        """Everything queued on one socket; each packet parsed on its own (one that cannot be
        read is an Arrival saying so, never an exception)."""
        out = []
        while True:
            try:
                data, addr = sock.recvfrom(65535)
            except BlockingIOError:
                return out
            arrival = read_arrival(sock is self.icmp, data, addr[0], self.version, time.monotonic())
            if arrival is not None:
                out.append(arrival)

    def close(self) -> None:
        for sock in (self.sender, self.icmp, self.tcp):
            sock.close()
