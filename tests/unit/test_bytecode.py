"""twin/bytecode.py: when the supervisor may start with -OO (its optimized bytecode is fresh).

Real files and real `py_compile` output: freshness is judged as importlib judges a .pyc."""

from __future__ import annotations

import os
import py_compile
from pathlib import Path

import pytest

from twinvisor.twin import bytecode


def _source(tmp_path: Path, text: str = "'''doc'''\nX = 1\n") -> str:
    path = tmp_path / "mod.py"
    path.write_text(text)
    return str(path)


def _compile(source: str, mode: py_compile.PycInvalidationMode) -> None:
    py_compile.compile(
        source, bytecode.cached_path(source), optimize=bytecode.LEVEL, invalidation_mode=mode
    )


def test_no_bytecode_is_not_fresh(tmp_path: Path) -> None:
    assert not bytecode.is_fresh(_source(tmp_path))
    assert not bytecode.is_fresh(str(tmp_path / "missing.py"))


def test_timestamp_bytecode_is_fresh_until_the_source_changes(tmp_path: Path) -> None:
    source = _source(tmp_path)
    _compile(source, py_compile.PycInvalidationMode.TIMESTAMP)
    assert bytecode.cached_path(source).endswith(".opt-2.pyc")
    assert bytecode.is_fresh(source)
    Path(source).write_text("X = 2\n")  # another size
    assert not bytecode.is_fresh(source)
    _compile(source, py_compile.PycInvalidationMode.TIMESTAMP)
    st = os.stat(source)
    os.utime(source, (st.st_atime, st.st_mtime + 10))  # same size, another mtime
    assert not bytecode.is_fresh(source)


def test_checked_hash_bytecode_follows_the_content(tmp_path: Path) -> None:
    source = _source(tmp_path, "X = 1\n")
    _compile(source, py_compile.PycInvalidationMode.CHECKED_HASH)
    assert bytecode.is_fresh(source)
    Path(source).write_text("X = 2\n")  # same size, other bytes
    assert not bytecode.is_fresh(source)


def test_unchecked_hash_bytecode_is_used_as_it_is(tmp_path: Path) -> None:
    source = _source(tmp_path, "X = 1\n")
    _compile(source, py_compile.PycInvalidationMode.UNCHECKED_HASH)
    Path(source).write_text("X = 2\n")
    assert bytecode.is_fresh(source)  # as importlib would: it does not look at the source


@pytest.mark.parametrize("junk", [b"", b"\x00" * 5, b"not a pyc at all"])
def test_a_broken_pyc_is_not_fresh(tmp_path: Path, junk: bytes) -> None:
    source = _source(tmp_path)
    cached = Path(bytecode.cached_path(source))
    cached.parent.mkdir()
    cached.write_bytes(junk)
    assert not bytecode.is_fresh(source)


def test_turned_off_means_plain(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(bytecode.OPTIMIZE_ENV, "0")
    assert not bytecode.enabled()
    assert not bytecode.ready()
    assert bytecode.interpreter_flags() == []
    assert bytecode.why_plain() == "TWINVISOR_OPTIMIZE=0"


def test_sentinels_are_real_files() -> None:
    """A renamed module would leave a sentinel that is never fresh (always plain)."""
    for source in bytecode.sentinels():
        assert os.path.isfile(source), source
