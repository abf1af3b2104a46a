"""The machine contract: schema-valid documents spelled for every reader, one exit status
scheme, JSON wherever results are printed, JUnit that a JUnit library reads, and help with
examples."""

import json
import re
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
from hypothesis import given
from hypothesis import strategies as st
from junitparser import Error, Failure, JUnitXml, Skipped

from mbtest import jsondoc
from mbtest.experiment.cell import judge
from mbtest.experiment.scenario import from_dict
from mbtest.report import junit
from mbtest.verdict import expect
from tests.schemas import REGISTRY, assert_spelled, lines, validate
from tests.unit.test_report import CELLS, results_dir

DATA = Path(__file__).parent.parent / "data"


def mbtest(*args, **kwargs):
    return subprocess.run(
        [sys.executable, "-m", "mbtest.cli", *args], capture_output=True, text=True, timeout=60
    )


def test_every_shipped_schema_is_a_valid_json_schema():
    kinds = ("common", "cell", "matrix", "run", "probe", "selfcheck", "decode", "campaign")
    for kind in kinds:
        schema = REGISTRY.contents(f"https://mbtest.invalid/schemas/{kind}.schema.json")
        jsonschema.Draft202012Validator.check_schema(schema)


def test_64_bit_values_are_strings_and_times_rfc3339_when_written():
    doc = {"dsn": 11797614010818209560, "started": 1796008702.5, "seconds": 2.5, "port": 80}
    text = jsondoc.dumps({"nested": [doc]})
    back = json.loads(text)["nested"][0]
    assert back["dsn"] == "11797614010818209560"  # exact: a number would read back rounded
    assert back["started"] == "2026-11-30T03:18:22.500000Z" and back["seconds"] == 2.5
    assert jsondoc.number(back["dsn"]) == 11797614010818209560 and jsondoc.number(5) == 5
    assert jsondoc.epoch(back["started"]) == 1796008702.5 == jsondoc.epoch(1796008702.5)
    assert jsondoc.is_schema("mbtest.cell/1", "cell") and jsondoc.is_schema("mbtest.cell/2", "cell")
    assert not jsondoc.is_schema("mbtest.cell/3", "cell")
    with pytest.raises(AssertionError):
        assert_spelled({"data_ack": 2**60})


def test_values_are_written_as_readers_write_them_never_as_python_reprs():
    assert jsondoc.plain({"client": False, "server": None}) == "client: false, server: none"
    assert jsondoc.plain([]) == "-" and jsondoc.plain(["a", 1]) == "a, 1"
    said = expect.said("stalled", True, "eq", False)
    assert said == "stalled is true, expected false"


def test_decode_lines_of_recorded_captures_are_schema_valid():
    for pcap in sorted(DATA.glob("exchange-*.pcap")):
        run = mbtest("decode", "--json", "--all", str(pcap))
        assert run.returncode == 0, run.stderr
        records = lines(run.stdout)
        assert records
        for record in records:
            validate(record, "decode")


def test_a_cell_line_of_a_run_validates_and_a_bad_one_does_not():
    directory = CELLS / "coalesce-across-mappings"
    scenario = json.loads((directory / "scenario.json").read_text())
    run = json.loads((directory / "run.json").read_text())
    cell = {
        "schema": "mbtest.cell/2",
        "scenario": scenario,
        "expected": expect.EXPECTATIONS[scenario["expect"]].to_json(),
        "started": 1796008702.5,
        **judge(from_dict(dict(scenario)), run, str(directory)),
    }
    spelled = json.loads(jsondoc.dumps(cell))
    validate(spelled, "cell")
    spelled["verdict"] = "fine"
    with pytest.raises(jsonschema.ValidationError):
        validate(spelled, "cell")


def test_junit_of_the_recorded_cells_reads_back_with_a_junit_library(tmp_path):
    base = results_dir(tmp_path)
    out = junit.write([str(base)], str(tmp_path / "matrix.xml"))
    cells = lines((base / "results.jsonl").read_text())
    xml = JUnitXml.fromfile(out)
    cases = [case for suite in xml for case in suite]
    assert sorted(c.name for c in cases) == sorted(c["scenario"]["name"] for c in cells)
    verdicts = {c["scenario"]["name"]: c["verdict"] for c in cells}
    for case in cases:
        kinds = {type(r) for r in case.result}
        verdict = verdicts[case.name]
        if verdict in ("deviates", "flaky", "inconclusive"):
            assert kinds == {Failure} and verdict in case.result[0].message
        elif verdict == "error":
            assert kinds == {Error}
        elif verdict == "not-run":
            assert kinds == {Skipped}
        else:
            assert not kinds, (case.name, verdict)


def test_usage_errors_exit_2_and_say_one_sentence():
    for args in (
        ("matrix", "--shard", "4/3", "--list"),
        ("matrix", "--cell", "no-such-cell", "--list"),
        ("run", "--cell", "no-such-cell"),
        ("expect", "show", "no-such-expectation"),
        ("matrix", "--no-such-option"),
    ):
        run = mbtest(*args)
        assert run.returncode == 2, (args, run.returncode, run.stderr)
        assert "Traceback" not in run.stderr


def test_listings_print_json_lines():
    for args, key in (
        (("middlebox", "ls", "--json"), "parameters"),
        (("expect", "ls", "--json"), "outcomes"),
        (("probe", "--list", "--json"), "summary"),
        (("matrix", "--list", "--json", "--ip", "4"), "expect"),
    ):
        run = mbtest(*args)
        assert run.returncode == 0, run.stderr
        records = lines(run.stdout)
        assert records and all(key in r for r in records), args
    shown = lines(mbtest("middlebox", "show", "payload-rewrite", "--json").stdout)[0]
    assert [p["name"] for p in shown["parameters"]] == ["find", "replace", "direction", "segment"]


def test_middlebox_show_aligns_its_parameter_column():
    text = mbtest("middlebox", "show", "strip-option").stdout
    rows = [line for line in text.splitlines() if line.startswith("    ") and "=" in line]
    starts = {re.match(r"    \S+\s+", line).end() for line in rows}
    assert len(rows) > 3 and len(starts) == 1, rows


def test_every_command_says_examples_and_exit_statuses_in_its_help():
    for args in (
        (),
        ("matrix",),
        ("run",),
        ("probe",),
        ("report",),
        ("selfcheck",),
        ("topo", "up"),
    ):
        text = mbtest(*args, "--help").stdout
        assert "Examples:" in text, args
    for args in ((), ("matrix",), ("run",), ("probe",), ("selfcheck",)):
        assert "Exit status" in mbtest(*args, "--help").stdout, args


def _spelled_slowly(document, key=None):
    """The plain recursion the fast spelling must agree with."""
    if isinstance(document, dict):
        return {k: _spelled_slowly(v, k) for k, v in document.items()}
    if isinstance(document, (list, tuple)):
        return [_spelled_slowly(v, key) for v in document]
    if key in jsondoc.U64_KEYS and isinstance(document, int) and not isinstance(document, bool):
        return str(document)
    if key in jsondoc.TIME_KEYS and isinstance(document, float):
        return jsondoc.rfc3339(document)
    return document


_keys = st.sampled_from(["dsn", "time", "key", "started", "name", "value", "hmac", "x"])
_leaves = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(0, 2**64 - 1),
    st.floats(0, 4e9, allow_nan=False),
    st.text(max_size=5),
)
_documents = st.recursive(
    _leaves,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4),
        st.tuples(inner, inner),
        st.dictionaries(_keys, inner, max_size=4),
    ),
    max_leaves=20,
)


@given(_documents, st.one_of(st.none(), _keys))
def test_the_fast_spelling_agrees_with_the_plain_recursion(document, key):
    assert jsondoc.spelled(document, key) == _spelled_slowly(document, key)
