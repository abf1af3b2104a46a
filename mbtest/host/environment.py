"""What a result was measured on, recorded with the result: the kernel, the MPTCP sysctls
(of the host, or of each node's namespace), the versions of mbtest, its libraries and the
tools it drives, and the command. A report shows the run's environment, not the one of the
machine that renders it."""

from __future__ import annotations

import platform
import shutil
import subprocess
import sys
from functools import cache
from importlib import metadata
from typing import Any

from mbtest import __version__

PACKAGES = ("scapy", "pyroute2", "click", "rich", "Jinja2", "NetfilterQueue")
TOOLS = {  # tool -> the argument that prints its version on the first line
    "iptables": "--version",
    "tcpdump": "--version",
    "tshark": "--version",
    "ip": "-V",
}
MPTCP_SYSCTLS = (
    "enabled",
    "checksum_enabled",
    "allow_join_initial_addr_port",
    "add_addr_timeout",
    "pm_type",
    "scheduler",
    "stale_loss_cnt",
)


def mptcp_sysctls(root: str = "/proc/sys/net/mptcp") -> dict[str, str]:
    """net.mptcp.* as this process's namespace sees them (the ones this kernel has)."""
    values = {}
    for key in MPTCP_SYSCTLS:
        try:
            with open(f"{root}/{key}") as f:
                values[key] = f.read().strip()
        except OSError:
            continue
    return values


@cache
def versions() -> dict[str, str]:
    """mbtest, Python, the libraries and the tools, each as its version or "missing"."""
    out = {"mbtest": __version__, "python": platform.python_version()}
    for name in PACKAGES:
        try:
            out[name.lower()] = metadata.version(name)
        except metadata.PackageNotFoundError:
            out[name.lower()] = "missing"
    for tool, flag in TOOLS.items():
        out[tool] = _tool_version(tool, flag)
    return out


def _tool_version(tool: str, flag: str) -> str:
    path = shutil.which(tool)
    if path is None:
        return "missing"
    try:
        done = subprocess.run([path, flag], capture_output=True, text=True, timeout=5)
    except (OSError, subprocess.TimeoutExpired):
        return "unknown"
    lines = (done.stdout or done.stderr).strip().splitlines()
    return lines[0].strip()[:120] if lines else "unknown"


def host(command: str | None = None) -> dict[str, Any]:
    """The environment of this machine now: for the document of a run that starts here."""
    return {
        "kernel": platform.release(),
        "machine": platform.machine(),
        "mptcp_sysctls": mptcp_sysctls(),
        "versions": versions(),
        "command": command if command is not None else " ".join(["mbtest", *sys.argv[1:]]),
    }
