"""LogFile, tail_lines and follow, on real files (and a real full filesystem)."""

from __future__ import annotations

import os
import queue
import random
import shutil
import stat
import subprocess
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from twinvisor.config.specs import LogSpec
from twinvisor.linux.logs import MAX_LINE, LogFile, follow, tail_lines

STAMP0 = b"1970-01-01T00:00:00.000Z "  # what wallclock=0.0 formats to


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Problems(list[str]):
    def __call__(self, msg: str) -> None:
        self.append(msg)


def make_log(path: Path | str | None, **kw: object) -> tuple[LogFile, FakeClock, Problems]:
    clock, problems = FakeClock(), Problems()
    spec = LogSpec(None if path is None else str(path), **kw)  # type: ignore[arg-type]
    return LogFile(spec, problems, clock, wallclock=lambda: 0.0), clock, problems


def rotated_contents(path: Path, backups: int) -> bytes:
    """Oldest backup first, then the live file: the whole retained history in order."""
    names = [Path(f"{path}.{i}") for i in range(backups, 0, -1)] + [path]
    return b"".join(p.read_bytes() for p in names if p.exists())


# -- rotation -------------------------------------------------------------------------------


def test_rotation_keeps_every_byte_exactly_once(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log, _, problems = make_log(path, max_bytes=1000, backups=300)
    rng = random.Random(7)
    sent = bytearray()
    for i in range(150):
        # sizes both well under and over max_bytes, lines and partial lines
        chunk = (f"{i}:" + "y" * rng.choice([0, 5, 80, 999, 1000, 1001, 2500])).encode()
        if rng.random() < 0.7:
            chunk += b"\n"
        log.write(chunk)
        sent += chunk
    log.close()
    assert rotated_contents(path, 300) == bytes(sent)
    assert Path(f"{path}.100").exists()  # it did rotate, a lot
    assert all(p.stat().st_size <= 1000 for p in tmp_path.iterdir())
    assert not problems and log.dropped_bytes == 0


def test_rotation_drops_the_oldest_backup(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log, _, _ = make_log(path, max_bytes=100, backups=2)
    sent = b""
    for i in range(50):
        line = f"line {i:03d} ".encode() + b"z" * 30 + b"\n"  # 40 bytes
        log.write(line)
        sent += line
    log.close()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["x.log", "x.log.1", "x.log.2"]
    kept = rotated_contents(path, 2)
    assert sent.endswith(kept) and len(kept) >= 200  # two full backups + the live file


def test_backups_zero_truncates_in_place(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log, _, _ = make_log(path, max_bytes=100, backups=0)
    log.write(b"a" * 60)
    log.write(b"b" * 60)
    log.write(b"c" * 30)
    log.close()
    assert path.read_bytes() == b"b" * 60 + b"c" * 30
    assert [p.name for p in tmp_path.iterdir()] == ["x.log"]


def test_reopen_after_external_rotation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log, _, _ = make_log(path)
    log.write(b"old\n")
    path.rename(tmp_path / "x.log.moved")
    log.reopen()
    log.write(b"new\n")
    log.close()
    assert (tmp_path / "x.log.moved").read_bytes() == b"old\n"
    assert path.read_bytes() == b"new\n"


# -- framing ----------------------------------------------------------------------------------


def test_timestamps_only_at_line_starts_across_split_writes(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log, _, _ = make_log(path, timestamps=True)
    for piece in [b"ab", b"c\nd", b"e\n\n", b"f", b"\n"]:
        log.write(piece)
    log.close()
    assert path.read_bytes() == STAMP0 + b"abc\n" + STAMP0 + b"de\n" + STAMP0 + b"\n" + STAMP0 + (
        b"f\n"
    )


def test_long_line_is_split_at_the_cap(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log, _, _ = make_log(path, max_bytes=0)
    total = 3 * MAX_LINE + 8192
    for _ in range(total // 8192):
        log.write(b"x" * 8192)
    log.write(b"\n")
    log.write(b"y" * MAX_LINE + b"\n")  # exactly at the cap: no extra empty line
    log.close()
    lines = path.read_bytes().split(b"\n")
    assert [len(x) for x in lines] == [MAX_LINE, MAX_LINE, MAX_LINE, 8192, MAX_LINE, 0]


def test_long_line_split_gets_timestamps_too(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log, _, _ = make_log(path, timestamps=True, max_bytes=0)
    log.write(b"x" * (MAX_LINE + 10) + b"\n")
    log.close()
    assert path.read_bytes() == STAMP0 + b"x" * MAX_LINE + b"\n" + STAMP0 + b"x" * 10 + b"\n"


@pytest.mark.parametrize("timestamps", [False, True])
def test_invalid_utf8_is_kept(tmp_path: Path, timestamps: bool) -> None:
    path = tmp_path / "x.log"
    log, _, _ = make_log(path, timestamps=timestamps)
    junk = b"\xff\xfe bad \xc3\x28 \xed\xa0\x80 nul\x00 cr\r\n"
    log.write(junk)
    log.close()
    assert path.read_bytes() == (STAMP0 if timestamps else b"") + junk


def test_none_path_discards_silently() -> None:
    log, _, problems = make_log(None)
    log.write(b"anything\n")
    log.reopen()
    log.close()
    assert log.path is None and log.dropped_bytes == 0 and not problems


def test_modes_of_created_file_and_directory(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        log, _, _ = make_log(tmp_path / "logs" / "x.log")
        log.write(b"hi\n")
        log.close()
    finally:
        os.umask(old)
    assert stat.S_IMODE((tmp_path / "logs").stat().st_mode) == 0o750
    assert stat.S_IMODE((tmp_path / "logs" / "x.log").stat().st_mode) == 0o640


# -- failures ---------------------------------------------------------------------------------


def test_deleted_directory_is_recreated_after_the_check_interval(tmp_path: Path) -> None:
    path = tmp_path / "logs" / "x.log"
    log, clock, problems = make_log(path)
    log.write(b"one\n")
    shutil.rmtree(tmp_path / "logs")
    log.write(b"two\n")  # within the check interval: goes to the unlinked file, by design
    assert not path.exists()
    clock.now += 1.0
    log.write(b"three\n")
    log.close()
    assert path.read_bytes() == b"three\n"
    assert not problems and log.dropped_bytes == 0


def test_a_log_file_is_created_by_its_first_output(tmp_path: Path) -> None:
    # a quiet program leaves no empty file (and a start of 1000 creates no 2000 inodes)
    path = tmp_path / "logs" / "x.log"
    log, _clock, problems = make_log(path)
    assert (tmp_path / "logs").is_dir() and not path.exists() and not problems
    log.write(b"first\n")
    log.close()
    assert path.read_bytes() == b"first\n"


def test_a_read_only_log_directory_is_reported_at_start(tmp_path: Path) -> None:
    ro = tmp_path / "ro"
    ro.mkdir()
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", "ro", "tmpfs", str(ro)], check=False)
    if done.returncode != 0:
        pytest.skip("cannot mount a read-only tmpfs here")
    try:
        log, _clock, problems = make_log(ro / "x.log")
        assert len(problems) == 1, problems  # before any output, as for every other bad path
        assert str(ro / "x.log") in problems[0] and "Read-only file system" in problems[0]
        log.write(b"lost\n")
        assert log.dropped_bytes == 5
        log.close()
    finally:
        subprocess.run(["umount", str(ro)], check=True)


def test_open_failure_counts_reports_and_recovers(tmp_path: Path) -> None:
    blocker = tmp_path / "logs"
    blocker.write_bytes(b"a regular file where the log directory should be")
    path = blocker / "x.log"
    log, clock, problems = make_log(path)
    assert len(problems) == 1 and str(path) in problems[0]  # reported at start already
    log.write(b"abc\n")
    log.write(b"defg\n")
    assert log.dropped_bytes == 9
    assert len(problems) == 1  # throttled: one report per 60 s
    clock.now += 60.0
    log.write(b"h\n")
    assert len(problems) == 2 and log.dropped_bytes == 11
    blocker.unlink()
    log.write(b"back\n")  # fd was never opened, so every write retries the open
    log.close()
    marker = f"[twinvisor: 11 bytes dropped: File exists ({blocker})]\n".encode()
    assert path.read_bytes() == marker + b"back\n"
    assert len(problems) == 3 and "writing again" in problems[2] and str(path) in problems[2]


def test_file_replaced_by_directory(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log, clock, problems = make_log(path)
    log.write(b"one\n")
    path.unlink()
    path.mkdir()
    clock.now += 1.0
    log.write(b"two\n")  # check notices the inode change, reopen fails: EISDIR
    assert log.dropped_bytes == 4
    assert len(problems) == 1 and "Is a directory" in problems[0]
    path.rmdir()
    log.write(b"three\n")
    log.close()
    assert path.read_bytes() == b"[twinvisor: 4 bytes dropped: Is a directory]\nthree\n"


@pytest.fixture(params=["tmpfs", "devfull"])
def full_fs(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """A directory where the log will hit a real ENOSPC; yields (kind, dir).

    tmpfs: a 64 KiB tmpfs filled up (needs root). devfull: the log path is switched to a
    symlink to /dev/full, which always runs; the test id names the variant.
    """
    kind: str = request.param
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    if kind == "devfull":
        yield kind, mnt
        return
    args = ["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)]
    done = subprocess.run(args, capture_output=True, text=True)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs ({done.stderr.strip()}); the devfull variant ran")
    try:
        yield kind, mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=True)


def fill(path: Path) -> None:
    with open(path, "wb", buffering=0) as f:
        try:
            while True:
                f.write(b"\0" * 4096)
        except OSError as e:
            assert e.errno == 28  # ENOSPC


def test_full_filesystem(full_fs: tuple[str, Path]) -> None:
    kind, mnt = full_fs
    path = mnt / "x.log"
    if kind == "devfull":
        path.touch()  # a log file from an earlier run: opened at start (a new one at 1st write)
    log, clock, problems = make_log(path)
    page = os.sysconf("SC_PAGE_SIZE")
    if kind == "tmpfs":
        # exactly one page: no slack left in the log file; and no newline, so the gap marker
        # must start a line of its own
        log.write(b"A" * page)
        fill(mnt / "filler")
    else:
        os.rename(path, mnt / "x.log.real")
        os.symlink("/dev/full", path)
        clock.now += 1.0  # let the check see the new inode
    for _ in range(3):
        log.write(b"lost line\n")  # must not raise
        clock.now += 10.0
    assert log.dropped_bytes == 30
    assert len(problems) == 1
    assert str(path) in problems[0] and "No space left on device" in problems[0]
    clock.now += 31.0  # the window has passed: one more report
    log.write(b"lost\n")
    assert len(problems) == 2 and log.dropped_bytes == 35

    if kind == "tmpfs":
        (mnt / "filler").unlink()
        before = b"A" * page + b"\n"
    else:
        path.unlink()
        os.rename(mnt / "x.log.real", path)
        clock.now += 1.0
        before = b""
    log.write(b"back\n")
    log.close()
    marker = b"[twinvisor: 35 bytes dropped: No space left on device]\n"
    assert path.read_bytes() == before + marker + b"back\n"
    assert len(problems) == 3 and "writing again after 35 bytes" in problems[2]


# -- tail_lines and follow ------------------------------------------------------------------


def test_tail_lines_on_a_file_bigger_than_the_chunk(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    lines = [f"line {i}\r\xff".encode() + b"\n" for i in range(5000)]
    path.write_bytes(b"".join(lines))
    assert tail_lines(str(path), 3, chunk=64) == lines[-3:]
    assert tail_lines(str(path), 1000, chunk=100) == lines[-1000:]
    assert tail_lines(str(path), 10**6, chunk=4096) == lines
    assert tail_lines(str(path), 0) == []


def test_tail_lines_partial_last_line_and_empty_file(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"a\nb\nc")
    assert tail_lines(str(path), 2, chunk=1) == [b"b\n", b"c"]
    path.write_bytes(b"")
    assert tail_lines(str(path), 5) == []


class Follower:
    """Runs follow() in a thread; `expect` waits (on a queue, no sleeping) for given bytes."""

    def __init__(self, path: Path, from_start: bool = True) -> None:
        self.from_start = from_start
        self.stop = threading.Event()
        self.q: queue.Queue[bytes] = queue.Queue()
        self.thread = threading.Thread(target=self._run, args=(str(path),))
        self.thread.start()

    def _run(self, path: str) -> None:
        for data in follow(path, poll=0.01, stop=self.stop, from_start=self.from_start):
            self.q.put(data)

    def expect(self, wanted: bytes) -> None:
        got = b""
        while len(got) < len(wanted):
            got += self.q.get(timeout=10)
        assert got == wanted

    def close(self) -> None:
        self.stop.set()
        self.thread.join(timeout=10)
        assert not self.thread.is_alive()


def test_follow_across_rotation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    log, _, _ = make_log(path, max_bytes=100, backups=3)
    log.write(b"a" * 60)
    follower = Follower(path)
    try:
        follower.expect(b"a" * 60)
        log.write(b"b" * 30)
        follower.expect(b"b" * 30)
        log.write(b"c" * 60)  # rotates: x.log -> x.log.1, the c's go to a new x.log
        assert (tmp_path / "x.log.1").exists()
        follower.expect(b"c" * 60)
        log.write(b"d" * 20)
        follower.expect(b"d" * 20)
    finally:
        follower.close()
        log.close()
    assert follower.q.empty()


def test_follow_across_truncation_and_late_creation(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    follower = Follower(path)  # the file does not exist yet: follow waits for it
    log, _, _ = make_log(path, max_bytes=100, backups=0)
    try:
        log.write(b"a" * 60)
        follower.expect(b"a" * 60)
        log.write(b"b" * 50)  # truncates in place
        follower.expect(b"b" * 50)
    finally:
        follower.close()
        log.close()


def test_follow_starts_at_the_end_by_default(tmp_path: Path) -> None:
    path = tmp_path / "x.log"
    path.write_bytes(b"old\n")
    follower = Follower(path, from_start=False)
    try:
        # we cannot see when the thread has opened the file, so keep appending until it shows
        got = b""
        for _ in range(1000):
            with open(path, "ab") as f:
                f.write(b"x")
            try:
                got = follower.q.get(timeout=0.05)
                break
            except queue.Empty:
                continue
        assert got and set(got) == {ord("x")}
    finally:
        follower.close()


def test_follow_stops_while_waiting(tmp_path: Path) -> None:
    follower = Follower(tmp_path / "never.log")
    follower.close()
