"""TCP flag letters and TCP option names, named once for every view, edit and report."""

from __future__ import annotations

from mbtest.errors import MbtestError

TCP_FLAG_NAMES = "FSRPAUEC"  # bit 0 (FIN) .. bit 7 (CWR)
FIN, SYN, RST, PSH, ACK, URG, ECE, CWR = (1 << i for i in range(8))
_FLAG_STRINGS = tuple(
    "".join(c for i, c in enumerate(TCP_FLAG_NAMES) if flags & (1 << i)) for flags in range(256)
)

# TCP option kinds mbtest names (IANA "TCP Option Kind Numbers").
EOL, NOP, MSS, WINDOW_SCALE, SACK_PERMITTED, SACK, TIMESTAMPS, MPTCP = 0, 1, 2, 3, 4, 5, 8, 30
OPTION_NAMES = {
    EOL: "EOL", NOP: "NOP", MSS: "MSS", WINDOW_SCALE: "window scale",
    SACK_PERMITTED: "SACK permitted", SACK: "SACK", TIMESTAMPS: "timestamps", 19: "TCP-MD5",
    29: "TCP-AO", MPTCP: "MPTCP", 34: "TFO cookie",
}  # fmt: skip


def flag_letters(flags: int) -> str:
    """``SA`` for a SYN/ACK; the empty string for no flag (the NS/AE bit is not named)."""
    return _FLAG_STRINGS[flags & 0xFF]


def flag_text(flags: int) -> str:
    """The flag letters, or ``none`` (for sentences and tables)."""
    return flag_letters(flags) or "none"


def flag_bits(letters: str) -> int:
    """The flags byte for letters such as ``PA``."""
    try:
        return sum(1 << TCP_FLAG_NAMES.index(c) for c in set(letters))
    except ValueError:
        raise MbtestError(f"TCP flags {letters!r}: use the letters {TCP_FLAG_NAMES}") from None


def option_name(kind: int) -> str:
    return OPTION_NAMES.get(kind, f"option {kind}")


class TcpFlags:
    """Flag tests shared by the read-only segment view and the editable packet."""

    __slots__ = ()
    flags: int

    @property
    def syn(self) -> bool:
        return bool(self.flags & SYN)

    @property
    def is_ack(self) -> bool:
        return bool(self.flags & ACK)

    @property
    def rst(self) -> bool:
        return bool(self.flags & RST)

    @property
    def fin(self) -> bool:
        return bool(self.flags & FIN)
