"""The fleet runner's selector loop on real processes (shells standing in for ssh): whole
lines per host as they arrive, a last line without newline, stderr kept, exit codes, and
no more than `parallel` at once."""

from __future__ import annotations

from pathlib import Path

from twinvisor.cli.remote_fleet import HostRun, run_all
from twinvisor.cli.remote_hosts import parse_host


def shell(name: str, script: str) -> HostRun:
    return HostRun(parse_host(name), ["sh", "-c", script])


def test_lines_stderr_and_exit_codes_per_host() -> None:
    runs = [
        shell("a", "printf 'one\\ntw'; printf 'o\\nthree'; echo oops >&2; exit 3"),
        shell("b", "echo fine"),
        HostRun(parse_host("c"), ["/nonexistent/ssh"]),
    ]
    seen: list[tuple[str, bool, bytes]] = []
    run_all(runs, parallel=8, emit=lambda r, err, line: seen.append((r.target.name, err, line)))
    assert [(n, line) for n, err, line in seen if n == "a" and not err] == [
        ("a", b"one\n"),
        ("a", b"two\n"),
        ("a", b"three\n"),  # the unterminated last line, ended for it
    ]
    assert ("a", True, b"oops\n") in seen and ("b", False, b"fine\n") in seen
    assert [r.rc for r in runs] == [3, 0, 255]
    assert bytes(runs[0].out) == b"one\ntwo\nthree" and bytes(runs[0].err) == b"oops\n"
    assert b"cannot run /nonexistent/ssh" in bytes(runs[2].err)


def test_at_most_parallel_at_once(tmp_path: Path) -> None:
    """Each host records itself in a shared file while it runs: never two at a time."""
    log = tmp_path / "log"
    script = f"echo start >> {log}; echo end >> {log}"
    runs = [shell(f"h{i}", script) for i in range(4)]
    run_all(runs, parallel=1, emit=None)
    assert log.read_text().split() == ["start", "end"] * 4
    assert all(r.rc == 0 for r in runs)
