"""The native fast path is found next to its source or built on first use into the user's
cache folder; without a compiler the Python engine is used and one sentence says why."""

import os

from mbtest.middlebox import native


def test_built_on_first_use_into_the_cache_folder(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setattr(native, "IN_TREE", str(tmp_path / "not-built-here"))
    monkeypatch.setattr(native, "_found", None)
    path, why = native.binary()
    assert why is None and path is not None, why
    assert path.startswith(str(tmp_path / "mbtest" / "native")) and os.access(path, os.X_OK)
    monkeypatch.setattr(native, "_found", None)
    assert native.binary() == (path, None)  # found again, not rebuilt
    assert [p for p in os.listdir(os.path.dirname(path)) if p.endswith(".tmp")] == []


def test_without_a_compiler_the_python_engine_is_used_and_said_why(tmp_path, monkeypatch):
    from mbtest.middlebox.spec import MiddleboxSpec

    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))
    monkeypatch.setenv("CC", str(tmp_path / "no-such-compiler"))
    monkeypatch.setattr(native, "IN_TREE", str(tmp_path / "not-built-here"))
    monkeypatch.setattr(native, "_found", None)
    path, why = native.binary()
    assert path is None and "no C compiler" in why
    behaviour = MiddleboxSpec.parse("pass").build()
    assert native.argv(behaviour, 0, str(tmp_path / "log")) is None
