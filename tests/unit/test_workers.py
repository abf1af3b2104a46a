"""Cell processes from the warm fork server and from a fresh interpreter behave alike: the
folder and the error a cell that cannot run leaves are the matrix's to read."""

import os

import pytest

from mbtest.experiment import workers


@pytest.fixture(params=["forked", "interpreter"])
def start_mode(request, monkeypatch):
    if request.param == "interpreter":
        monkeypatch.setenv("MBTEST_CELL_START", "interpreter")
    else:
        monkeypatch.delenv("MBTEST_CELL_START", raising=False)
    return request.param


def test_a_cell_that_cannot_read_its_scenario_says_why(tmp_path, monkeypatch, start_mode):
    monkeypatch.chdir(tmp_path)  # a relative path: the cell runs where the matrix does
    (tmp_path / "scenario.json").write_text("{not json")
    os.makedirs(tmp_path / "cell")
    workers.warm()
    proc = workers.start("scenario.json", "cell")
    assert proc.wait(60) == 2
    why = proc.error()
    assert why.startswith("mbtest: ") and "scenario.json" in why, why
    assert "Traceback" not in why
    assert sorted(os.listdir(tmp_path / "cell")) == []  # its stderr file was read and removed


def test_a_cell_that_cannot_be_started_is_a_failed_process(tmp_path, monkeypatch):
    monkeypatch.delenv("MBTEST_CELL_START", raising=False)

    def broken(*args, **kwargs):
        raise OSError(32, "Broken pipe")

    monkeypatch.setattr(workers, "_Forked", broken)
    proc = workers.start(str(tmp_path / "s.json"), str(tmp_path))
    assert proc.poll() == 1 and "could not be started" in proc.error()
