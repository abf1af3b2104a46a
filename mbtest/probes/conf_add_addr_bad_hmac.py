"""ADD_ADDR whose HMAC is wrong: silently ignored (no echo), while a valid one is echoed?

RFC 8684 §3.4.1: "If a host receives an ADD_ADDR option for which it cannot validate the
HMAC, it SHOULD silently ignore the option."

The probe announces one address with a wrong HMAC, then another with a valid one: the
second shows that the target echoes announcements at all (§3.4.1: "a receiver receiving a
fresh ADD_ADDR option (where E=0), will send the same option back to the sender, but not
including the HMAC, and with E=1"). Accepted: no echo of the bad one and an echo of the good
one (as expected). No echo of either is inconclusive (the path may strip them, or the
target ignores every announcement). An echo of the bad one deviates.
"""

import ipaddress

from mbtest.mptcp import crypto
from mbtest.mptcp.options import AddAddr

NAME = "conf_add_addr_bad_hmac"
SUITE = "conformance"
RFC = "RFC 8684 §3.4.1"
QUOTE = (
    "If a host receives an ADD_ADDR option for which it cannot validate the HMAC, it SHOULD "
    "silently ignore the option."
)
OUTCOMES = {
    "ignored": ("as-expected", "§3.4.1: the bad HMAC ignored, the valid one echoed"),
}
BAD_ID, GOOD_ID = 7, 8


def exercise(session, exchange):
    conn = session.handshake()
    address = ipaddress.ip_address(session.source)
    # no port: an IPv6 ADD_ADDR with a port and an HMAC (30 bytes) does not fit beside
    # timestamps
    good = crypto.add_addr_hmac(conn.local_key, conn.remote_key, GOOD_ID, address)
    bad = crypto.add_addr_hmac(conn.local_key, conn.remote_key, BAD_ID, address) ^ 0x5A5A5A5A
    exchange.context.update(bad_id=BAD_ID, good_id=GOOD_ID, address=str(address))
    bad_option = AddAddr(address=address, address_id=BAD_ID, hmac=bad)
    exchange.send(conn.segment(bad_option), "wrong HMAC")
    exchange.listen(conn.sport, session.timeout / 2, until=lambda got: _echo(got, BAD_ID))
    exchange.send(
        conn.segment(AddAddr(address=address, address_id=GOOD_ID, hmac=good)), "valid HMAC"
    )
    exchange.listen(conn.sport, session.timeout, until=lambda got: _echo(got, GOOD_ID))


def _echo(got, address_id):
    return any(o.echo and o.address_id == address_id for _, o in got.options(AddAddr))


def judge(recorded, context):
    if _echo(recorded.answers(), context["bad_id"]):
        return "echoed", "the target echoed the ADD_ADDR whose HMAC is wrong"
    if recorded.answers().resets():
        return "reset", f"a RST: {recorded.answers().describe()}"
    if _echo(recorded.answers(), context["good_id"]):
        return "ignored", "no echo of the wrong HMAC; the valid announcement was echoed"
    return "inconclusive", (
        "neither announcement was echoed: the path may strip ADD_ADDR or its echo, or the "
        "target ignores every announcement, so the rejection itself is not shown"
    )
