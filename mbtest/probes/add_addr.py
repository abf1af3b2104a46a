"""ADD_ADDR with a valid HMAC in an ACK, inside an MPTCP connection set up first."""

import ipaddress

from mbtest.mptcp import crypto
from mbtest.mptcp.options import AddAddr

NAME = "add_addr"
ADDRESS_ID = 1


def build(session):
    conn = session.handshake()
    # Announce our own address and port only: the target may open a subflow toward them.
    # An IPv6 ADD_ADDR with a port and an HMAC (30 bytes) does not fit beside timestamps.
    address = ipaddress.ip_address(session.source)
    port = conn.sport if address.version == 4 or conn.ts_recent is None else None
    hmac = crypto.add_addr_hmac(conn.local_key, conn.remote_key, ADDRESS_ID, address, port)

    def check(reply):
        for option in reply.mptcp_options():
            if isinstance(option, AddAddr) and option.echo:
                if (option.address, option.port, option.address_id) == (address, port, ADDRESS_ID):
                    return "the target echoed the address"
                return f"the target echoed {option.address} id {option.address_id} instead"
        return None

    option = AddAddr(address=address, address_id=ADDRESS_ID, port=port, hmac=hmac)
    return conn.segment(option, check=check)
