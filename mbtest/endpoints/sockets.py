"""Kernel MPTCP sockets and what they say about themselves (MPTCP_INFO, subflows).

After a fallback to TCP, MPTCP_INFO fails with EOPNOTSUPP: that failure is itself evidence,
reported as ``"mptcp": false``.
"""

from __future__ import annotations

import ctypes
import errno
import socket
import struct
from typing import Any

from mbtest.errors import EnvironmentProblem
from mbtest.host import netns

IPPROTO_MPTCP = 262
SOL_MPTCP = 284
MPTCP_INFO, MPTCP_TCPINFO, MPTCP_SUBFLOW_ADDRS = 1, 2, 3
MPTCP_INFO_FLAG_FALLBACK = 1
MPTCP_INFO_FLAG_REMOTE_KEY_RECEIVED = 2

# struct mptcp_info (include/uapi/linux/mptcp.h), natural alignment.
_INFO = struct.Struct("=6B2xIIQQQ3BxIQQQQB3xIII")
_INFO_FIELDS = (
    "subflows", "add_addr_signal", "add_addr_accepted", "subflows_max", "add_addr_signal_max",
    "add_addr_accepted_max", "flags", "token", "write_seq", "snd_una", "rcv_nxt",
    "local_addr_used", "local_addr_max", "csum_enabled", "retransmits", "bytes_retrans",
    "bytes_sent", "bytes_received", "bytes_acked", "subflows_total", "last_data_sent",
    "last_data_recv", "last_ack_recv",
)  # fmt: skip
_SUBFLOW_DATA = struct.Struct("=IIII")  # size_subflow_data, num_subflows, size_kernel, size_user
_SOCKADDR_STORAGE = 128
_TCP_INFO_SIZE = 232
_TCP_STATES = {
    1: "ESTABLISHED", 2: "SYN_SENT", 3: "SYN_RECV", 4: "FIN_WAIT1", 5: "FIN_WAIT2",
    6: "TIME_WAIT", 7: "CLOSE", 8: "CLOSE_WAIT", 9: "LAST_ACK", 10: "LISTEN", 11: "CLOSING",
}  # fmt: skip

_libc = ctypes.CDLL(None, use_errno=True)


def mptcp_socket(ns: str, family: int) -> socket.socket:
    """An MPTCP stream socket living in namespace ns."""
    try:
        return netns.call_in(ns, socket.socket, family, socket.SOCK_STREAM, IPPROTO_MPTCP)
    except OSError as e:
        if e.errno in (errno.ENOPROTOOPT, errno.EPROTONOSUPPORT, errno.EINVAL):
            raise EnvironmentProblem(
                f"MPTCP is disabled in namespace {ns} (net.mptcp.enabled=0) "
                "or missing from the kernel"
            ) from None
        raise


def mptcp_info(sock: socket.socket) -> dict[str, int] | None:
    """MPTCP_INFO as a dict, or None when the socket fell back to TCP (EOPNOTSUPP)."""
    try:
        raw = sock.getsockopt(SOL_MPTCP, MPTCP_INFO, 256)
    except OSError as e:
        # EOPNOTSUPP: an MPTCP socket that fell back; ENOPROTOOPT: a plain TCP socket (after
        # a fallback Linux may hand the subflow itself to accept()).
        if e.errno in (errno.EOPNOTSUPP, errno.ENOPROTOOPT):
            return None
        raise
    raw = raw.ljust(_INFO.size, b"\0")[: _INFO.size]
    return dict(zip(_INFO_FIELDS, _INFO.unpack(raw), strict=True))


def _subflow_getsockopt(
    sock: socket.socket, option: int, item_size: int, count: int = 8
) -> list[bytes]:
    """getsockopt with an in/out struct mptcp_subflow_data header, which Python's
    socket.getsockopt cannot pre-fill: done with ctypes."""
    size = _SUBFLOW_DATA.size + item_size * count
    buf = ctypes.create_string_buffer(_SUBFLOW_DATA.pack(_SUBFLOW_DATA.size, 0, 0, item_size), size)
    length = ctypes.c_uint32(size)
    if _libc.getsockopt(sock.fileno(), SOL_MPTCP, option, buf, ctypes.byref(length)) != 0:
        err = ctypes.get_errno()
        if err in (errno.EOPNOTSUPP, errno.ENOPROTOOPT):
            return []
        raise OSError(err, f"getsockopt MPTCP option {option}: {errno.errorcode.get(err, err)}")
    _, num, _, size_user = _SUBFLOW_DATA.unpack_from(buf.raw, 0)
    step = size_user or item_size
    items = []
    for i in range(min(num, count)):
        start = _SUBFLOW_DATA.size + i * step
        items.append(buf.raw[start : start + step])
    return items


def _sockaddr(raw: bytes) -> str:
    family = struct.unpack_from("=H", raw, 0)[0]
    if family == socket.AF_INET:
        port = struct.unpack_from("!H", raw, 2)[0]
        return f"{socket.inet_ntop(socket.AF_INET, raw[4:8])}:{port}"
    if family == socket.AF_INET6:
        port = struct.unpack_from("!H", raw, 2)[0]
        return f"[{socket.inet_ntop(socket.AF_INET6, raw[8:24])}]:{port}"
    return "?"


def _tcp_info(raw: bytes) -> dict[str, Any]:
    """struct tcp_info (include/uapi/linux/tcp.h): what says whether a sender is stuck."""
    raw = raw.ljust(144, b"\0")
    retransmits, probes, backoff = raw[2], raw[3], raw[4]
    rto, _, snd_mss, _, unacked = struct.unpack_from("=IIIII", raw, 8)
    last_data_sent, _, _, last_ack_recv, pmtu = struct.unpack_from("=IIIII", raw, 44)
    rtt, _, _, cwnd = struct.unpack_from("=IIII", raw, 68)
    total_retrans = struct.unpack_from("=I", raw, 100)[0]
    bytes_acked, bytes_received = struct.unpack_from("=QQ", raw, 120)
    segs_out, segs_in = struct.unpack_from("=II", raw, 136)
    return {
        "state": _TCP_STATES.get(raw[0], str(raw[0])),
        "rtt_us": rtt,
        "rto_us": rto,
        "snd_cwnd": cwnd,
        "snd_mss": snd_mss,
        "pmtu": pmtu,
        "unacked": unacked,
        "retransmits": retransmits,  # RTO expirations since the last forward progress
        "backoff": backoff,  # how often the RTO doubled (exponential backoff)
        "probes": probes,  # zero-window probes unanswered
        "total_retrans": total_retrans,
        "last_data_sent_ms": last_data_sent,
        "last_ack_recv_ms": last_ack_recv,
        "bytes_acked": bytes_acked,
        "bytes_received": bytes_received,
        "segs_out": segs_out,
        "segs_in": segs_in,
    }


def transport_infos(sock: socket.socket) -> list[dict[str, Any]]:
    """TCP_INFO of every subflow of an MPTCP socket, or of the socket itself once it fell
    back to TCP: the sender's retransmission state, read while a transfer is quiet."""
    if mptcp_info(sock) is None:
        return [_tcp_info(sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE))]
    return [_tcp_info(raw) for raw in _subflow_getsockopt(sock, MPTCP_TCPINFO, _TCP_INFO_SIZE)]


def socket_report(sock: socket.socket) -> dict[str, Any]:
    """Everything the socket says: MPTCP or fallen back, MPTCP_INFO, each subflow."""
    info = mptcp_info(sock)
    report: dict[str, Any] = {"mptcp": info is not None, "info": info, "subflows": []}
    if info is None:
        raw = sock.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, _TCP_INFO_SIZE)
        report["tcp"] = _tcp_info(raw)
        return report
    addrs = _subflow_getsockopt(sock, MPTCP_SUBFLOW_ADDRS, 2 * _SOCKADDR_STORAGE)
    infos = _subflow_getsockopt(sock, MPTCP_TCPINFO, _TCP_INFO_SIZE)
    for i, raw in enumerate(addrs):
        entry = {
            "local": _sockaddr(raw[:_SOCKADDR_STORAGE]),
            "remote": _sockaddr(raw[_SOCKADDR_STORAGE:]),
        }
        if i < len(infos):
            entry.update(_tcp_info(infos[i]))
        report["subflows"].append(entry)
    return report
