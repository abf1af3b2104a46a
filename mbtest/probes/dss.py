"""Data with a DSS mapping and its checksum, inside an MPTCP connection set up first."""

from mbtest.mptcp.options import Dss, MpFail

NAME = "dss"
PAYLOAD = b"mbtest DSS probe: these bytes are mapped and checksummed by a DSS option\n"


def build(session):
    conn = session.handshake(checksums=True)  # checksums on: payload changes can be seen
    mapping = conn.data_mapping(PAYLOAD)
    data_end = (mapping.dsn + len(PAYLOAD)) & (2**64 - 1)

    def check(reply):
        for option in reply.mptcp_options():
            if isinstance(option, MpFail):
                return "MP_FAIL: the target found the DSS checksum wrong"
            if isinstance(option, Dss) and option.data_ack is not None:
                bits = 64 if option.data_ack_8_bytes else 32
                if option.data_ack == data_end & (2**bits - 1):
                    return "the data is acknowledged at the MPTCP level"
                return f"data ack {option.data_ack} does not cover the probe (expected {data_end})"
        return None

    return conn.segment(mapping, payload=PAYLOAD, flags="PA", check=check)
