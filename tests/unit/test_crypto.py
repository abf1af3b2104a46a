"""Crypto against values the Linux kernel sent (recorded in tests/data) and RFC 1071."""

import ipaddress
import struct

from mbtest.mptcp import crypto

# From tests/data/exchange-v4-csum.client.pcap (kernel 6.18); tshark's mptcp.expected_token
# and mptcp.expected_idsn agree with the tokens and IDSNs below.
SERVER_KEY = 14909190705480535413
CLIENT_KEY = 16682390332696603560


def test_token_and_idsn_match_the_kernel_and_wireshark():
    assert crypto.token(SERVER_KEY) == 1434025233  # the token the kernel put in MP_JOIN
    assert crypto.idsn(SERVER_KEY) == 7042933561663000451
    assert crypto.token(CLIENT_KEY) == 1225424158
    assert crypto.idsn(CLIENT_KEY) == 2916373358850071221


def test_join_hmacs_match_the_kernel():
    nonce_client, nonce_server = 1485056388, 738990184  # MP_JOIN SYN and SYN/ACK nonces
    assert (
        crypto.join_synack_hmac(SERVER_KEY, CLIENT_KEY, nonce_server, nonce_client)
        == 6499525282106123888
    )
    assert crypto.join_ack_hmac(
        CLIENT_KEY, SERVER_KEY, nonce_client, nonce_server
    ) == bytes.fromhex("5fbf62cea09be42e8db1b3f7ae2533521d93e56f")


def test_add_addr_hmac_matches_the_kernel():
    sent = 2736723294541945152  # ADD_ADDR id 2, 10.12.0.2, no port, from the server
    assert (
        crypto.add_addr_hmac(SERVER_KEY, CLIENT_KEY, 2, ipaddress.ip_address("10.12.0.2")) == sent
    )
    assert crypto.add_addr_hmac(SERVER_KEY, CLIENT_KEY, 2, "10.12.0.2", 0) == sent
    assert crypto.add_addr_hmac(CLIENT_KEY, SERVER_KEY, 2, "10.12.0.2") != sent
    assert crypto.add_addr_hmac(SERVER_KEY, CLIENT_KEY, 2, "10.12.0.2", 8080) != sent


def test_ones_complement_sum_is_rfc1071s_example():
    assert crypto.ones_complement_sum(bytes.fromhex("0001f203f4f5f6f7")) == 0xDDF2
    assert crypto.ones_complement_sum(b"\x01") == 0x0100  # odd length pads with a zero byte


def test_dss_checksum_makes_the_covered_sum_all_ones():
    dsn, ssn, payload = 0x0123456789ABCDEF, 1, bytes(range(251))
    csum = crypto.dss_checksum(dsn, ssn, len(payload), payload)
    pseudo = struct.pack("!QIHH", dsn, ssn, len(payload), csum)
    assert crypto.ones_complement_sum(pseudo + payload) == 0xFFFF
    assert crypto.dss_checksum(dsn, ssn, len(payload), payload[:-1] + b"\0") != csum


def test_version_0_uses_sha1():
    import hashlib

    digest = hashlib.sha1(SERVER_KEY.to_bytes(8, "big")).digest()
    assert crypto.token(SERVER_KEY, version=0) == int.from_bytes(digest[:4], "big")
    assert crypto.idsn(SERVER_KEY, version=0) == int.from_bytes(digest[-8:], "big")
