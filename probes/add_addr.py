"""ADD_ADDR with a valid HMAC in an ACK, inside an MPTCP connection set up first."""

import ipaddress

from mbtest.mptcp import crypto
from mbtest.mptcp.options import AddAddr

NAME = "add_addr"
ADDRESS_ID = 1


def build(session):
    conn = session.handshake()
    # Announce our own address only: the target may open a subflow toward what it is told.
    address = ipaddress.ip_address(session.source)
    hmac = crypto.add_addr_hmac(conn.local_key, conn.remote_key, ADDRESS_ID, address)

    def check(reply):
        for option in reply.mptcp_options():
            if isinstance(option, AddAddr) and option.echo:
                if option.address == address and option.address_id == ADDRESS_ID:
                    return "the target echoed the address"
                return f"the target echoed {option.address} id {option.address_id} instead"
        return None

    return conn.segment(AddAddr(address=address, address_id=ADDRESS_ID, hmac=hmac), check=check)
