"""Cross-check of the codec with tshark's MPTCP dissector, field by field.

For every frame, each tshark field holds the values of all the frame's MPTCP options in
order (-E occurrence=a); ``expected_fields`` builds the same lists from our decoded options.
"""

from __future__ import annotations

import subprocess
from collections import defaultdict

from mbtest.mptcp.options import (
    AddAddr,
    Dss,
    MpCapable,
    MpFail,
    MpFastclose,
    MpJoinAck,
    MpJoinSyn,
    MpJoinSynAck,
    MpPrio,
    MpTcpRst,
    RemoveAddr,
)

P = "tcp.options.mptcp."
FIELDS = [
    P + name
    for name in (
        "subtype",
        "version",
        "flags",
        "checksumreq.flags",
        "extensibility.flag",
        "sha256.flag",
        "sendkey",
        "recvkey",
        "addrid",
        "recvtok",
        "sendrand",
        "sendtrunchmac",
        "sendhmac",
        "addaddrtrunchmac",
        "rawdataack",
        "rawdataseqno",
        "subflowseqno",
        "datalvllen",
        "checksum",
        "echo",
        "ipv4",
        "ipv6",
        "port",
        "backup.flag",
        "rst_reason",
        "flag_T.flag",
        "flag_U.flag",
        "datafin.flag",
        "dseqn8.flag",
        "dataack8.flag",
        "dseqnpresent.flag",
        "dataackpresent.flag",
    )
]
# Wireshark 4.0 does not dissect the DSS checksum (the option is shown with length 24 but no
# checksum field); the DSS checksums are instead recomputed and checked against the kernel.
NOT_DISSECTED = {P + "checksum"}


def tshark_fields(pcap: str) -> dict[int, dict[str, list[str]]]:
    """frame number -> tshark field -> values, for frames with MPTCP options."""
    argv = [
        "tshark",
        "-n",
        "-r",
        pcap,
        "-Y",
        P + "subtype",
        "-T",
        "fields",
        "-E",
        "occurrence=a",
        "-E",
        "aggregator=|",
        "-e",
        "frame.number",
    ]
    for f in FIELDS:
        argv += ["-e", f]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120, check=True).stdout
    frames = {}
    for line in out.splitlines():
        number, *values = line.split("\t")
        frames[int(number)] = {
            f: [_norm(x) for x in v.split("|")] for f, v in zip(FIELDS, values, strict=True) if v
        }
    return frames


def _norm(value: str) -> str:
    return {"True": "1", "False": "0"}.get(value, value)


def _b(flag: bool) -> str:
    return "1" if flag else "0"


def expected_fields(options) -> dict[str, list[str]]:
    """The tshark fields our decoded options imply, in tshark's textual forms."""
    out: dict[str, list[str]] = defaultdict(list)

    def put(name: str, value) -> None:
        out[P + name].append(str(value))

    for o in options:
        put("subtype", o.SUBTYPE if hasattr(o, "SUBTYPE") else o.subtype)
        wire = o.encode()
        if isinstance(o, MpCapable):
            put("version", o.version)
            put("flags", f"0x{o.flags:02x}")
            put("checksumreq.flags", _b(o.checksum_required))
            put("extensibility.flag", _b(o.extensibility))
            if o.version == 1:
                put("sha256.flag", _b(o.hmac_sha256))
            if o.sender_key is not None:
                put("sendkey", o.sender_key)
            if o.receiver_key is not None:
                put("recvkey", o.receiver_key)
            if o.data_length is not None:
                put("datalvllen", o.data_length)
        elif isinstance(o, (MpJoinSyn, MpJoinSynAck)):
            put("flags", f"0x{wire[2]:02x}")
            put("backup.flag", _b(o.backup))
            put("addrid", o.address_id)
            if isinstance(o, MpJoinSyn):
                put("recvtok", o.token)
            else:
                put("sendtrunchmac", o.hmac)
            put("sendrand", o.nonce)
        elif isinstance(o, MpJoinAck):
            put("sendhmac", o.hmac.hex())
        elif isinstance(o, Dss):
            put("flags", f"0x{wire[3]:02x}")
            put("datafin.flag", _b(o.data_fin))
            put("dseqn8.flag", _b(o.dsn_8_bytes))
            put("dseqnpresent.flag", _b(o.has_mapping))
            put("dataack8.flag", _b(o.data_ack_8_bytes))
            put("dataackpresent.flag", _b(o.data_ack is not None))
            if o.data_ack is not None:
                put("rawdataack", o.data_ack)
            if o.has_mapping:
                put("rawdataseqno", o.dsn)
                put("subflowseqno", o.subflow_seq)
                put("datalvllen", o.data_length)
            if o.checksum is not None:
                put("checksum", f"0x{o.checksum:04x}")
        elif isinstance(o, AddAddr):
            put("echo", _b(o.echo))
            put("addrid", o.address_id)
            put("ipv4" if o.address.version == 4 else "ipv6", o.address)
            if o.port is not None:
                put("port", o.port)
            if o.hmac is not None:
                put("addaddrtrunchmac", o.hmac)
        elif isinstance(o, RemoveAddr):
            for aid in o.address_ids:
                put("addrid", aid)
        elif isinstance(o, MpPrio):
            put("flags", f"0x{wire[2]:02x}")
            put("backup.flag", _b(o.backup))
            if o.address_id is not None:
                put("addrid", o.address_id)
        elif isinstance(o, MpFastclose):
            put("recvkey", o.receiver_key)
        elif isinstance(o, MpFail):
            put("rawdataseqno", o.dsn)
        elif isinstance(o, MpTcpRst):
            put("flags", f"0x{wire[2]:02x}")
            put("flag_U.flag", _b(o.unassigned_flags & 4))
            put("flag_T.flag", _b(o.transient))
            put("rst_reason", f"0x{o.reason:02x}")
    return dict(out)


def compare(records, pcap: str) -> tuple[int, list[str]]:
    """(number of field values compared, differences) between our decode and tshark's."""
    theirs = tshark_fields(pcap)
    compared, diffs = 0, []
    ours_frames = {r.frame for r in records if r.options}
    for missing in sorted(set(theirs) - ours_frames):
        diffs.append(f"frame {missing}: tshark sees MPTCP options, we decoded none")
    for r in records:
        if not r.options:
            continue
        mine = expected_fields(r.options)
        other = theirs.get(r.frame, {})
        for name in sorted(set(mine) | set(other)):
            if name in NOT_DISSECTED and name not in other:
                continue
            if mine.get(name) != other.get(name):
                diffs.append(
                    f"frame {r.frame} {name}: ours {mine.get(name)} tshark {other.get(name)}"
                )
            else:
                compared += len(mine[name])
    return compared, diffs
