"""Kernel behaviours: where Linux has the real middlebox, netfilter does the work.

Their ground truth comes from the kernel too: the engine observes packets before and after
(kernel-optstrip) or reads the connection-tracking table (nat) and logs each change.
"""

from __future__ import annotations

from typing import ClassVar

from mbtest.middlebox.base import KERNEL, Behaviour, Cell
from mbtest.middlebox.params import Param
from mbtest.packet.quote import quoted_source, retarget

FTP = "PORT 10,1,1,1,200,10\r\n"  # a PORT command the FTP helper rewrites
FLAG_MATCH = {
    "all": [],
    "syn": ["--tcp-flags", "SYN,ACK", "SYN"],
    "synack": ["--tcp-flags", "SYN,ACK", "SYN,ACK"],
    "non-syn": ["--tcp-flags", "SYN", "NONE"],
}


class KernelOptStrip(Behaviour):
    NAME = "kernel-optstrip"
    ENGINE = KERNEL
    MODELS = "netfilter's TCPOPTSTRIP removing TCP option 30 (a Linux-based firewall)"
    DOES = "the kernel overwrites option 30 with NOPs in the chosen segments"
    EXPECTED = "fallback to TCP when MP_CAPABLE is stripped from the SYN; data intact"
    RFC = "§3.1, §3.7, §6"
    CELLS = (Cell("kernel-optstrip-syn", "fallback-at-handshake", "segments=syn"),)
    PARAMS = (Param("segments", "choice", "all", "which segments", tuple(FLAG_MATCH)),)
    OBSERVE = True  # log the kernel's changes by comparing packets before and after

    def kernel_rules(self, sides: dict[str, str]) -> list[list[str]]:
        match = FLAG_MATCH[self.segments]
        return [
            [
                "-t",
                "mangle",
                "-A",
                "FORWARD",
                "-p",
                "tcp",
                *match,
                "-j",
                "TCPOPTSTRIP",
                "--strip-options",
                "30",
            ]
        ]


class Nat(Behaviour):
    NAME = "nat"
    ENGINE = KERNEL
    MODELS = "a NAT rewriting source addresses and ports (home gateway, carrier-grade NAT)"
    DOES = (
        "the kernel's source NAT on the way to the server: masquerade or a fixed address, "
        "ports kept or rewritten; ICMP errors' quotes translated back (RFC 5508) or kept"
    )
    EXPECTED = "MPTCP works; joins authenticate by token; data intact"
    RFC = "§6"
    CELLS = (
        Cell("nat", "mptcp-unaffected"),
        Cell(
            "nat-join-path", "mptcp-with-joins", "ports=range", topology="dual-path", slot="slotb"
        ),
    )
    PARAMS = (
        Param("to", "str", "", "source address to use (empty: the slot's own address, masquerade)"),
        Param(
            "ports",
            "choice",
            "random",
            "source ports: kept if free, random, or 61000-61999",
            ("keep", "random", "range"),
        ),
        Param(
            "quotes",
            "choice",
            "translate",
            "the packet quoted in ICMP errors: translated back (RFC 5508) or kept as sent",
            ("translate", "keep"),
        ),
    )
    CONNTRACK_LOG = True

    def icmp_error_rules(self, sides: dict[str, str], queue: int) -> list[tuple[str, list[str]]]:
        """With quotes=keep: ICMP errors from the server side are untracked (so the kernel NAT
        leaves them alone) and queued to the engine, which only readdresses them."""
        if self.quotes != "keep":
            return []
        out = []
        for tool, proto in (
            ("iptables", ["-p", "icmp", "--icmp-type"]),
            ("ip6tables", ["-p", "icmpv6", "--icmpv6-type"]),
        ):
            for kind in ("time-exceeded", "destination-unreachable"):
                match = ["-t", "raw", "-A", "PREROUTING", "-i", sides["server"], *proto, kind]
                out.append((tool, [*match, "-j", "CT", "--notrack"]))
                out.append((tool, [*match, "-j", "NFQUEUE", "--queue-num", str(queue)]))
        return out

    def handle_icmp_error(self, data: bytes, inside) -> tuple[bytes | None, dict | None]:
        """Readdressed to the inside host whose translated source it quotes; the quote is
        left as the router sent it (what RFC 5508 REQ-4 forbids)."""
        out = retarget(data, inside)
        if out is None:
            return None, None
        host, port = quoted_source(data) or ("?", 0)
        quoted = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
        entry = {
            "flow": "?",
            "direction": "s>c",
            "field": "icmp destination",
            "before": quoted,
            "after": "inside host, quote kept",
        }
        return out, entry

    def kernel_rules(self, sides: dict[str, str]) -> list[list[str]]:
        out = ["-t", "nat", "-A", "POSTROUTING", "-o", sides["server"], "-p", "tcp"]
        ports = {"keep": [], "random": ["--random-fully"], "range": []}[self.ports]
        if self.to:
            target = f"{self.to}:61000-61999" if self.ports == "range" else self.to
            if ":" in self.to and self.ports == "range":
                target = f"[{self.to}]:61000-61999"
            return [[*out, "-j", "SNAT", "--to-source", target, *ports]]
        port_range = ["--to-ports", "61000-61999"] if self.ports == "range" else []
        return [[*out, "-j", "MASQUERADE", *port_range, *ports]]


class MssClamp(Behaviour):
    NAME = "mss-clamp"
    ENGINE = KERNEL
    MODELS = "a router clamping the MSS of SYNs (PPPoE and VPN gateways): netfilter's TCPMSS"
    DOES = "the kernel rewrites the MSS option of SYN and SYN/ACK segments"
    EXPECTED = "MPTCP unaffected; data intact"
    RFC = "§6"
    CELLS = (Cell("mss-clamp", "mptcp-unaffected", "value=1000"),)
    PARAMS = (Param("value", "int", 1200, "the MSS to set", (), 536, 65495),)
    OBSERVE = True

    def kernel_rules(self, sides: dict[str, str]) -> list[list[str]]:
        return [
            [
                "-t",
                "mangle",
                "-A",
                "FORWARD",
                "-p",
                "tcp",
                "--tcp-flags",
                "SYN",
                "SYN",
                "-j",
                "TCPMSS",
                "--set-mss",
                str(self.value),
            ]
        ]


class SynProxy(Behaviour):
    NAME = "syn-proxy"
    ENGINE = KERNEL
    MODELS = (
        "a firewall answering SYNs itself with cookies before opening the server side (SYNPROXY)"
    )
    DOES = (
        "the kernel's SYNPROXY answers the client's SYN (without MP_CAPABLE) and then opens "
        "its own connection to the server"
    )
    EXPECTED = "plain TCP from the handshake on (the SYN/ACK lacks MP_CAPABLE); data intact"
    RFC = "§3.1, §6"
    CELLS = (Cell("syn-proxy", "plain-tcp"),)
    OBSERVE = True
    SYSCTLS: ClassVar[dict[str, str]] = {"net.netfilter.nf_conntrack_tcp_loose": "0"}

    def kernel_rules(self, sides: dict[str, str]) -> list[list[str]]:
        toward = ["-i", sides["client"], "-p", "tcp"]
        return [
            [
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                *toward,
                "--tcp-flags",
                "SYN,ACK",
                "SYN",
                "-j",
                "CT",
                "--notrack",
            ],
            [
                "-t",
                "filter",
                "-A",
                "FORWARD",
                *toward,
                "-m",
                "conntrack",
                "--ctstate",
                "INVALID,UNTRACKED",
                "-j",
                "SYNPROXY",
                "--sack-perm",
                "--timestamp",
                "--wscale",
                "7",
                "--mss",
                "1460",
            ],
            [
                "-t",
                "filter",
                "-A",
                "FORWARD",
                *toward,
                "-m",
                "conntrack",
                "--ctstate",
                "INVALID",
                "-j",
                "DROP",
            ],
        ]


class FtpAlg(Behaviour):
    NAME = "ftp-alg"
    ENGINE = KERNEL
    MODELS = "a NAT with an FTP ALG: the kernel's FTP helper rewriting PORT/EPRT commands"
    DOES = (
        "source NAT to an address of another length plus the FTP helper on port 21: the "
        "helper rewrites the address in PORT commands, changing the payload length, and "
        "shifts sequence numbers from then on"
    )
    EXPECTED = "with checksums: MP_FAIL / fallback; without: mapping mismatch, fallback or reset"
    RFC = "§3.3.1, §3.7"
    # one PORT command per segment, as on a real FTP control connection, and the server
    # still sending after the last one: without checksums the client then learns of the
    # server's fallback from its data, not by an MPTCP-level retransmission timer that
    # would forbid the fallback and reset instead (both permitted; a race otherwise)
    CELLS = tuple(
        Cell(
            f"ftp-alg-{tag}",
            f"length-change-{tag}",
            checksums=tag == "csum",
            conditions={
                "text": FTP,
                "port": 21,
                "c2s_bytes": len(FTP) * 8,
                "s2c_bytes": 20_000,
                "chunk": len(FTP),
            },
        )
        for tag in ("csum", "nocsum")
    )
    PARAMS = (
        Param("to", "str", "10.1.3.100", "the NAT address (added to the server-side interface)"),
        Param("port", "int", 21, "the control port the helper watches", (), 1, 65535),
    )
    OBSERVE = True
    CONNTRACK_LOG = True
    IP_VERSIONS = (4,)  # an IPv4 NAT address and PORT commands

    def addresses(self) -> list[str]:
        return [self.to]

    def kernel_rules(self, sides: dict[str, str]) -> list[list[str]]:
        return [
            [
                "-t",
                "raw",
                "-A",
                "PREROUTING",
                "-p",
                "tcp",
                "--dport",
                str(self.port),
                "-j",
                "CT",
                "--helper",
                "ftp",
            ],
            [
                "-t",
                "nat",
                "-A",
                "POSTROUTING",
                "-o",
                sides["server"],
                "-p",
                "tcp",
                "-j",
                "SNAT",
                "--to-source",
                self.to,
            ],
        ]
