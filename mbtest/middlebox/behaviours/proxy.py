"""A transparent TCP-terminating proxy: TPROXY diverts the client's connections to a plain
TCP relay in the slot, which opens its own connection to the original destination. MPTCP
ends at the proxy, as it does at a web-security proxy that does not speak it."""

from __future__ import annotations

from mbtest.middlebox.base import PROXY, Behaviour, Cell
from mbtest.middlebox.params import Param
from mbtest.middlebox.relay import MARK


class TransparentProxy(Behaviour):
    NAME = "transparent-proxy"
    ENGINE = PROXY
    MODELS = "a transparent web-security proxy terminating TCP (TPROXY plus a plain-TCP relay)"
    DOES = "intercepts the client's connections and re-originates them from the slot as plain TCP"
    EXPECTED = "plain TCP (the proxy does not speak MPTCP); data intact"
    RFC = "§6"
    PARAMS = (Param("port", "int", 15001, "the relay's local port", (), 1024, 65535),)
    CELLS = (Cell("transparent-proxy", "plain-tcp"),)

    def relay_port(self) -> int:
        return self.port

    def kernel_rules(self, sides: dict[str, str]) -> list[list[str]]:
        divert = ["-j", "TPROXY", "--on-port", str(self.port), "--tproxy-mark", f"{MARK}/{MARK}"]
        return [["-t", "mangle", "-A", "PREROUTING", "-i", sides["client"], "-p", "tcp", *divert]]
