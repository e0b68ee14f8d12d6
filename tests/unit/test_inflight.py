"""linux/inflight.py: the chunk between a pipe and a log file, on a real memfd and real files."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinvisor.linux import inflight
from twinvisor.linux.inflight import InFlight


@pytest.fixture(name="slot")
def slot_fixture() -> Iterator[InFlight]:
    s = InFlight()
    yield s
    s.close()


def _file(path: Path) -> tuple[int, int, int]:
    st = os.stat(path)
    return st.st_dev, st.st_ino, st.st_size


def test_nothing_pending_in_a_new_slot(slot: InFlight) -> None:
    assert slot.pending() is None


def test_a_put_is_pending_until_cleared(slot: InFlight, tmp_path: Path) -> None:
    log = tmp_path / "w.log"
    log.write_bytes(b"line 1\n")
    assert slot.put("web:1", "err", _file(log), b"line 2\n")
    pending = slot.pending()
    assert pending is not None
    assert (pending.name, pending.stream, pending.data) == ("web:1", "err", b"line 2\n")
    assert pending.file == _file(log)
    slot.clear()
    assert slot.pending() is None


def test_a_new_supervisor_finds_it_through_the_same_memfd(slot: InFlight) -> None:
    assert slot.put("w", "out", None, b"x" * inflight.MAX_DATA)
    other = InFlight(os.dup(slot.fd))  # as the guard hands it back
    try:
        pending = other.pending()
        assert pending is not None and pending.data == b"x" * inflight.MAX_DATA
        assert pending.file is None and pending.stream == "out"
    finally:
        other.close()


def test_too_big_is_not_noted(slot: InFlight) -> None:
    assert not slot.put("w", "out", None, b"x" * (inflight.MAX_DATA + 1))
    assert slot.pending() is None


def test_written_is_judged_by_the_file(tmp_path: Path, slot: InFlight) -> None:
    log = tmp_path / "w.log"
    log.write_bytes(b"line 1\n")
    slot.put("w", "out", _file(log), b"line 2\n")
    pending = slot.pending()
    assert pending is not None
    assert not pending.written(str(log))  # the file did not grow: write it
    with log.open("ab") as f:
        f.write(b"line 2\n")
    assert pending.written(str(log))  # it grew: it was written
    log.rename(tmp_path / "w.log.1")
    log.write_bytes(b"")
    assert pending.written(str(log))  # rotated since: the write had begun


def test_no_file_yet_is_written_once_the_file_has_bytes(tmp_path: Path, slot: InFlight) -> None:
    log = tmp_path / "w.log"
    slot.put("w", "out", None, b"first\n")
    pending = slot.pending()
    assert pending is not None
    assert not pending.written(str(log))
    log.write_bytes(b"")
    assert not pending.written(str(log))
    log.write_bytes(b"first\n")
    assert pending.written(str(log))


def test_a_handed_fd_of_another_kind_is_replaced(tmp_path: Path) -> None:
    """Untrusted: a file of the wrong size (or not ours) is closed and a new memfd made."""
    fd = os.open(tmp_path / "junk", os.O_RDWR | os.O_CREAT, 0o600)
    os.write(fd, b"TVIF1\0\x01" + b"\xff" * 100)
    s = InFlight(fd)
    try:
        assert os.fstat(s.fd).st_size == inflight.SIZE  # a new memfd (the junk file: closed)
        assert s.pending() is None
        assert not (tmp_path / "junk").read_bytes().startswith(b"TVIF1\0\x00")  # untouched
    finally:
        s.close()


@pytest.mark.parametrize("offset", [7, 7 + 8 * 3, 7 + 8 * 4, 7 + 8 * 5])
def test_damaged_fields_are_nothing_pending(slot: InFlight, offset: int) -> None:
    slot.put("w", "out", None, b"data")
    os.pwrite(slot.fd, b"\xff" * 8, offset)
    if offset == 7:  # dev: any value is a value; the file will not match
        assert slot.pending() is not None
    else:  # lengths and flags beyond their bounds
        assert slot.pending() is None
