"""TCP flag tests shared by the packet views."""


class TcpFlags:
    """Flag tests shared by the read-only segment view and the editable packet."""

    __slots__ = ()
    flags: int

    @property
    def syn(self) -> bool:
        return bool(self.flags & 0x02)

    @property
    def is_ack(self) -> bool:
        return bool(self.flags & 0x10)

    @property
    def rst(self) -> bool:
        return bool(self.flags & 0x04)

    @property
    def fin(self) -> bool:
        return bool(self.flags & 0x01)
