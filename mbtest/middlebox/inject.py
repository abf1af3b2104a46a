"""Sending the packets a behaviour forged or reshaped: whole IP packets on raw sockets, which
leave by OUTPUT and are never queued again."""

from __future__ import annotations

import socket

from mbtest.errors import PacketError
from mbtest.packet.ip import locate


class Injector:
    def __init__(self) -> None:
        self.sockets: dict[int, socket.socket] = {}

    def send(self, packet: bytes) -> None:
        header = locate(packet)
        if header.version not in self.sockets:
            family = socket.AF_INET if header.version == 4 else socket.AF_INET6
            self.sockets[header.version] = socket.socket(
                family, socket.SOCK_RAW, socket.IPPROTO_RAW
            )
        family = socket.AF_INET if header.version == 4 else socket.AF_INET6
        dst = packet[16:20] if header.version == 4 else packet[24:40]
        try:
            self.sockets[header.version].sendto(packet, (socket.inet_ntop(family, dst), 0))
        except OSError as e:
            raise PacketError(f"a forged packet could not be sent: {e.strerror or e}") from None

    def close(self) -> None:
        for sock in self.sockets.values():
            sock.close()
        self.sockets.clear()
