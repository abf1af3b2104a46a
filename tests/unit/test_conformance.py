"""Conformance probes judged without root: the verdicts recorded against a real Linux target
recomputed from their packets, each judge's other outcomes from crafted answers, and probe
files that lack the conformance API refused with one sentence."""

import ipaddress
import json
from pathlib import Path

import pytest

from mbtest.mptcp.options import AddAddr, Dss, MpFail, MpJoinSynAck, MpTcpRst
from mbtest.packet.headers import TcpSegment
from mbtest.probe import conform, loader, wire
from tests.schemas import validate

DATA = Path(__file__).parent.parent / "data"
RECORDED = [DATA / "conformance-v4.json", DATA / "conformance-v6.json"]
# Linux 6.18 against the testbed's server, as recorded (the netns tests check it live, with
# the kernel's counters as ground truth)
LINUX = {
    "conf_add_addr_bad_hmac": ("ignored", "as-expected"),
    "conf_csum_bad": ("mp-fail", "as-expected"),
    "conf_csum_bad_first": ("fallback", "deviates"),
    "conf_data_no_dss": ("fallback", "permitted-variant"),
    "conf_data_outside_mapping": ("fallback", "permitted-variant"),
    "conf_fastclose": ("reset", "as-expected"),
    "conf_fastclose_wrong_key": ("ignored", "as-expected"),
    "conf_first_data_dss": ("fallback", "as-expected"),
    "conf_infinite_mapping": ("fallback", "as-expected"),
    "conf_join_bad_hmac": ("reset", "as-expected"),
    "conf_join_unknown_token": ("reset", "as-expected"),
    "conf_third_ack_plain": ("fallback", "as-expected"),
}
TARGET, PROBE = "10.1.4.2", "10.1.1.1"


def test_the_conformance_suite_is_every_shipped_conformance_probe():
    assert set(loader.suite("conformance")) == set(LINUX)
    assert loader.suite("path") == loader.DEFAULT
    with pytest.raises(loader.ProbeFileError, match="unknown suite"):
        loader.suite("everything")


@pytest.mark.parametrize("path", RECORDED, ids=lambda p: p.stem)
def test_recorded_verdicts_are_recomputed_from_their_packets(path):
    doc = json.loads(path.read_text())
    validate(doc, "probe")
    version = doc["target"]["ip_version"]
    seen = {}
    for probe in doc["probes"]:
        again = conform.rejudge(loader.load(probe["name"]), probe, version)
        judged = again["conformance"]
        assert (judged["outcome"], judged["verdict"]) == (
            probe["conformance"]["outcome"],
            probe["conformance"]["verdict"],
        )
        assert judged["why"] == probe["conformance"]["why"]
        seen[probe["name"]] = (judged["outcome"], judged["verdict"])
    assert seen == LINUX


def _answer(*options, flags=0x10, ack=1000, payload=b"") -> TcpSegment:
    raw = wire.options_bytes(list(options)) if options else b""
    return TcpSegment(4, TARGET, PROBE, 64, 0, 80, 40000, 5000, ack, flags, 0, 0, 0, raw, payload)


def _recorded(step: str, *answers: TcpSegment) -> conform.Recorded:
    return conform.Recorded([conform.Step("answer", step, 0.01, a) for a in answers])


def _judge(name: str, recorded: conform.Recorded, context: dict) -> tuple[str, str]:
    spec = loader.load(name)
    outcome, _ = spec.module.judge(recorded, context)
    return outcome, conform.verdict_of(outcome, spec.module.OUTCOMES)[0]


RST = 0x04
CONTEXT = {"end_seq": 1000, "data_end": 500, "failed_dsn": 400, "mapped_end": 450}


def test_a_wrong_checksum_is_judged_by_its_mp_fail_and_what_follows():
    step = "bad checksum"
    mp_fail = _answer(Dss(data_ack=400), MpFail(dsn=400))
    assert _judge("conf_csum_bad", _recorded(step, mp_fail), CONTEXT) == ("mp-fail", "as-expected")
    rst = _answer(MpTcpRst(reason=6), flags=RST | 0x10)
    both = _recorded(step, mp_fail, rst)
    assert _judge("conf_csum_bad", both, CONTEXT) == ("mp-fail-then-reset", "permitted-variant")
    assert _judge("conf_csum_bad", _recorded(step, rst), CONTEXT) == ("reset", "deviates")
    acked = _answer(Dss(data_ack=500))  # the corrupted data accepted at the data level
    assert _judge("conf_csum_bad", _recorded(step, acked), CONTEXT) == ("mptcp-acked", "deviates")
    assert _judge("conf_csum_bad", _recorded(step), CONTEXT) == ("no-answer", "no-answer")
    spec = loader.load("conf_csum_bad")
    _, why = spec.module.judge(_recorded(step, _answer(Dss(data_ack=400), MpFail(dsn=7))), CONTEXT)
    assert "not the failed mapping's 400" in why


def test_unmapped_data_is_judged_by_its_data_ack():
    step = "data"
    held = _answer(Dss(data_ack=450))  # the mapped half only
    judge = "conf_data_outside_mapping"
    assert _judge(judge, _recorded(step, held), CONTEXT) == ("held", "as-expected")
    everything = _answer(Dss(data_ack=500))
    assert _judge(judge, _recorded(step, everything), CONTEXT) == ("acked-unmapped", "deviates")
    assert _judge(judge, _recorded(step, _answer()), CONTEXT) == ("fallback", "permitted-variant")
    short = _answer(Dss(data_ack=450), ack=900)  # the segment not even acknowledged by TCP
    assert _judge(judge, _recorded(step, short), CONTEXT) == ("not-acked", "deviates")
    held_no_dss = _answer(Dss(data_ack=300))
    assert _judge("conf_data_no_dss", _recorded(step, held_no_dss), CONTEXT)[1] == "as-expected"
    assert _judge("conf_data_no_dss", _recorded(step, everything), CONTEXT)[1] == "deviates"


def test_an_echo_decides_the_add_addr_verdict():
    context = {"bad_id": 7, "good_id": 8}
    echo = {
        i: _answer(AddAddr(address=ipaddress.ip_address(PROBE), address_id=i, echo=True))
        for i in (7, 8)
    }
    name = "conf_add_addr_bad_hmac"
    good_only = conform.Recorded([conform.Step("answer", "valid HMAC", 0.2, echo[8])])
    assert _judge(name, good_only, context) == ("ignored", "as-expected")
    bad = conform.Recorded([conform.Step("answer", "wrong HMAC", 0.1, echo[7])])
    assert _judge(name, bad, context) == ("echoed", "deviates")
    assert _judge(name, conform.Recorded([]), context) == ("inconclusive", "inconclusive")


def test_joins_fastcloses_and_infinite_mappings_each_have_one_accepted_answer():
    rst = _answer(MpTcpRst(reason=1), flags=RST)
    synack = _answer(MpJoinSynAck(address_id=0, hmac=1, nonce=2), flags=0x12)
    step = "join to an unknown token"
    control = conform.Step("answer", "control join", 0.0, synack)

    def unknown(*answers):
        recorded = _recorded(step, *answers)
        return _judge("conf_join_unknown_token", conform.Recorded([control, *recorded.steps]), {})

    assert unknown(rst) == ("reset", "as-expected")
    assert unknown(synack) == ("join-accepted", "deviates")
    assert unknown(_answer(flags=0x12)) == ("plain-syn-ack", "deviates")
    no_join = conform.Recorded([conform.Step("answer", "control join", 0.0, _answer(flags=0x12))])
    assert _judge("conf_join_unknown_token", no_join, {}) == ("inconclusive", "inconclusive")
    third = "third ACK, wrong HMAC"
    assert _judge("conf_join_bad_hmac", _recorded(third, rst), {}) == ("reset", "as-expected")
    assert _judge("conf_join_bad_hmac", _recorded(third, _answer()), {}) == ("accepted", "deviates")
    assert _judge("conf_fastclose", _recorded("fastclose", rst), {}) == ("reset", "as-expected")
    assert _judge("conf_fastclose", _recorded("fastclose", _answer()), {})[1] == "deviates"
    closed = conform.Recorded(
        [conform.Step("answer", "fastclose, wrong key", 0.1, rst),
         conform.Step("answer", "fastclose, right key", 0.3, rst)]
    )  # fmt: skip
    assert _judge("conf_fastclose_wrong_key", closed, CONTEXT) == ("reset", "deviates")
    alive = _recorded("data", _answer(Dss(data_ack=500)))
    control = conform.Step("answer", "fastclose, right key", 0.3, rst)
    alive_then_closed = conform.Recorded([*alive.steps, control])
    judged = _judge("conf_fastclose_wrong_key", alive_then_closed, CONTEXT)
    assert judged == ("ignored", "as-expected")
    no_control = _judge("conf_fastclose_wrong_key", alive, CONTEXT)  # MP_FASTCLOSE stripped?
    assert no_control == ("inconclusive", "inconclusive")
    step = "infinite mapping"
    plain_ack = _recorded(step, _answer())
    assert _judge("conf_infinite_mapping", plain_ack, CONTEXT) == ("fallback", "as-expected")
    still_mptcp = _recorded(step, _answer(Dss(data_ack=500)))
    assert _judge("conf_infinite_mapping", still_mptcp, CONTEXT) == ("mptcp-acked", "deviates")


def test_a_malformed_answer_is_kept_in_the_record_and_never_read_as_an_option():
    fields = [getattr(_answer(), f) for f in TcpSegment.__slots__][:13]
    broken = TcpSegment(*fields, b"\x1e\x09\x20", b"")  # MPTCP option running past the header
    step = conform.Step("answer", "data", 0.0, broken)
    assert step.to_json()["mptcp"][0].startswith("malformed")
    answers = conform.Answers([broken])
    assert answers.plain_acks() == [] and answers.options(Dss) == [] and not answers.mp_fail()
    assert conform.data_outcome(answers, 1000)[0] == "held"  # acked by TCP, nothing more


@pytest.mark.parametrize(
    ("body", "sentence"),
    [
        ('SUITE = "conformance"\n', "defines no exercise"),
        (
            'SUITE = "conformance"\ndef exercise(s, e): pass\ndef judge(r, c): pass\n',
            "RFC must be a string",
        ),
        (
            'SUITE = "conformance"\nRFC = QUOTE = "x"\nOUTCOMES = {"a": ("deviates", "y")}\n'
            "def exercise(s, e): pass\ndef judge(r, c): pass\n",
            "OUTCOMES must map",
        ),
        ('SUITE = "other"\ndef build(s): pass\n', "SUITE must be one of"),
    ],
)
def test_a_conformance_file_without_the_api_is_one_sentence(tmp_path, body, sentence):
    path = tmp_path / "mine.py"
    path.write_text(f'"""A probe."""\n{body}')
    with pytest.raises(loader.ProbeFileError, match=sentence):
        loader.load(str(path))


def test_a_failed_control_makes_any_answer_inconclusive():
    spec = loader.load("conf_csum_bad")
    context = dict(CONTEXT, control_data_end=300)
    mp_fail = conform.Step(
        "answer", "bad checksum", 0.2, _answer(Dss(data_ack=400), MpFail(dsn=400))
    )
    plain = conform.Step("answer", conform.CONTROL, 0.1, _answer())  # the good mapping: no DSS
    doc = conform.result(spec, [plain, mp_fail], context, [], None, 0.3)
    assert (doc["conformance"]["outcome"], doc["conformance"]["verdict"]) == (
        "inconclusive",
        "inconclusive",
    )
    assert "control (a good mapping) was not acknowledged" in doc["conformance"]["why"]
    acked = conform.Step("answer", conform.CONTROL, 0.1, _answer(Dss(data_ack=300)))
    doc = conform.result(spec, [acked, mp_fail], context, [], None, 0.3)
    assert doc["conformance"]["verdict"] == "as-expected"


def test_the_report_shows_each_verdict_its_rfc_sentence_and_the_exchange(tmp_path):
    from mbtest.report.render import render

    doc = json.loads(RECORDED[0].read_text())
    doc["probes"][0]["conformance"]["exchange"][0]["step"] = "<script>alert(1)</script>"
    source = tmp_path / "conformance.json"
    source.write_text(json.dumps(doc))
    html = Path(render([str(source)], str(tmp_path / "report.html"))).read_text()
    assert "<script>alert(1)</script>" not in html and "&lt;script&gt;" in html
    for probe in doc["probes"]:
        judged = probe["conformance"]
        section = html.split(f'id="probe-{doc["probes"].index(probe) + 1}-{probe["name"]}"')[1]
        section = section.split("</section>")[0]
        assert f'<span class="badge {judged["verdict"]}">{judged["verdict"]}</span>' in section
        assert section.count("<tr") == len(judged["exchange"]) + 1
        assert judged["rfc"] in section
    assert "conformance: " in html and "1 deviates" in html


def test_a_setup_the_target_never_answered_is_no_answer_else_inconclusive():
    spec = loader.load("conf_csum_bad")
    silent = conform.result(spec, [], {"setup_silent": True}, [], "no answer to the SYN", 1.0)
    assert silent["conformance"]["verdict"] == "no-answer"
    stripped = conform.result(spec, [], {"setup_silent": False}, [], "no MP_CAPABLE", 1.0)
    assert stripped["conformance"]["verdict"] == "inconclusive"
    assert "could not be set up: no MP_CAPABLE" in stripped["conformance"]["why"]
