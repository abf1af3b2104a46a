"""The codec and crypto against a live Linux MPTCP exchange: two paths, ADD_ADDR, a join,
data both ways, MP_PRIO, REMOVE_ADDR and an abortive close, captured on both sides."""

import collections

import pytest

from mbtest.experiment.exchange import run_exchange
from mbtest.observe.decode import decode_capture
from mbtest.observe.verify import verify
from tests.tshark import compare
from tests.unit.test_recorded_captures import EVERY_OPTION, need_tshark


@pytest.mark.parametrize("ip_version", [4, 6])
def test_live_exchange_decodes_like_tshark_and_its_crypto_is_the_kernels(tmp_path, ip_version):
    need_tshark()
    result = run_exchange(str(tmp_path), ip_version=ip_version, checksums=True, size=300_000)

    assert result.sha256["c>s sent"] == result.sha256["c>s received"]
    assert result.sha256["s>c sent"] == result.sha256["s>c received"]
    client, server = result.counters["client"], result.counters["server"]
    for name in (
        "MPCapableSYNTX",
        "MPCapableSYNACKRX",
        "AddAddr",
        "EchoAddTx",
        "MPJoinSynTx",
        "MPJoinSynAckRx",
        "MPPrioRx",
        "RmAddr",
        "MPFastcloseTx",
    ):
        assert client.get(name, 0) >= 1, name
    for name in (
        "MPCapableSYNRX",
        "MPCapableACKRX",
        "AddAddrTx",
        "EchoAdd",
        "MPJoinSynRx",
        "MPJoinAckRx",
        "MPPrioTx",
        "RmAddrTx",
        "MPFastcloseRx",
    ):
        assert server.get(name, 0) >= 1, name
    for side in (client, server):
        assert not {k for k in side if "Fallback" in k or k in ("DataCsumErr", "MPFailTx")}

    for side, pcap in result.captures.items():
        assert result.capture_stats[side]["dropped by kernel"] == 0
        records = list(decode_capture(pcap, keep_segments=True))
        assert {o.name for r in records for o in r.options} == EVERY_OPTION
        compared, differences = compare(records, pcap)
        assert differences == []
        assert compared > 300
        checks = verify(records)
        assert [c for c in checks if not c.ok] == []
        kinds = collections.Counter(c.kind for c in checks)
        assert kinds["dss-checksum"] >= 10
        for kind in ("idsn", "join-token", "join-synack-hmac", "join-ack-hmac", "add-addr-hmac"):
            assert kinds[kind] >= 1, (side, kind)
