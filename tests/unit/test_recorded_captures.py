"""The codec on captures the Linux kernel made: every field agrees with tshark's MPTCP
dissector, and all the crypto recomputed from the handshake keys equals what was sent."""

import collections
import os
import shutil
from pathlib import Path

import pytest

from mbtest.observe.decode import decode_capture
from mbtest.observe.verify import verify
from tests.tshark import compare

DATA = Path(__file__).parent.parent / "data"
CAPTURES = sorted(DATA.glob("exchange-*.pcap"))
EVERY_OPTION = {
    "MpCapable",
    "MpJoinSyn",
    "MpJoinSynAck",
    "MpJoinAck",
    "Dss",
    "AddAddr",
    "RemoveAddr",
    "MpPrio",
    "MpFastclose",
    "MpTcpRst",
}


def need_tshark():
    if shutil.which("tshark") is None:
        if os.environ.get("CI"):
            pytest.fail("tshark is missing: `make setup` installs it")
        pytest.skip("tshark is not installed (make setup installs it)")


def test_recorded_captures_are_there():
    assert len(CAPTURES) == 6


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_every_option_decodes_as_tshark_dissects_it(pcap):
    need_tshark()
    records = list(decode_capture(pcap))
    assert {o.name for r in records for o in r.options} == EVERY_OPTION
    assert not [e for r in records for e in r.errors]
    compared, differences = compare(records, str(pcap))
    assert differences == []
    assert compared > 150


@pytest.mark.parametrize("pcap", CAPTURES, ids=lambda p: p.name)
def test_crypto_recomputed_from_the_keys_equals_what_the_kernel_sent(pcap):
    checks = verify(decode_capture(pcap, keep_segments=True))
    assert [c for c in checks if not c.ok] == []
    kinds = collections.Counter(c.kind for c in checks)
    for kind in (
        "idsn",
        "join-token",
        "join-synack-hmac",
        "join-ack-hmac",
        "add-addr-hmac",
        "fastclose-key",
    ):
        assert kinds[kind] >= 1, kind
    if "nocsum" in pcap.name:
        assert kinds["dss-checksum"] == 0
    else:
        assert kinds["dss-checksum"] >= 3


def test_a_flipped_payload_byte_fails_its_dss_checksum(tmp_path):
    data = bytearray((DATA / "exchange-v4-csum.client.pcap").read_bytes())
    records = list(decode_capture(DATA / "exchange-v4-csum.client.pcap", keep_segments=True))
    target = next(
        r for r in records if r.payload_length > 100 and any(o.name == "Dss" for o in r.options)
    )
    payload = target.segment.payload
    at = data.index(payload)
    data[at + 50] ^= 0xFF
    broken = tmp_path / "flipped.pcap"
    broken.write_bytes(bytes(data))
    failed = [c for c in verify(decode_capture(broken, keep_segments=True)) if not c.ok]
    assert [c.kind for c in failed] == ["dss-checksum"]


def test_the_decode_table_is_written_as_packets_are_read(tmp_path):
    """Table mode streams: lines go out in bounded batches while packets are still being
    read, so memory stays constant whatever the capture's size."""
    import io

    from mbtest.cli.ui import print_decoded
    from mbtest.observe.decode import decode_capture

    records = list(decode_capture(DATA / "exchange-v4-csum.client.pcap"))
    out = io.StringIO()
    produced, pending = 1, []  # lines the table holds for the packets read so far

    def watched():
        nonlocal produced
        for _ in range(300):  # a long capture
            for record in records:
                pending.append(produced - out.getvalue().count("\n"))
                produced += 1 + len(record.options) + len(record.errors)
                yield record

    shown = print_decoded(watched(), "exchange", out)
    assert shown == 300 * len(records)
    assert out.getvalue().count("\n") == produced + 1  # and the closing line
    assert max(pending) < 2048 + 16  # never more than a batch held back
    assert sum(1 for p in pending if p == 0) >= 2  # written out while reading, not at the end
