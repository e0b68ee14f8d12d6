"""Issue 10, bad input: malformed config files and requests get a clear error (file:line:key,
JSON 4xx), never a traceback; a broken config never makes a running daemon uncontrollable;
the daemon's own logs are as private as the programs'."""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
    gone,
)


def test_daemon_logs_have_the_program_logs_mode(daemon: Daemon) -> None:
    """twinvisor.log and twinvisor.out were 0644 while program logs are 0640."""
    old = os.umask(0o022)  # the usual umask, under which the daemon's files came out 0644
    try:
        daemon.up({"app": {"command": child("flood", 3)}})
    finally:
        os.umask(old)
    daemon.wait_state("app", "RUNNING")
    logs = Path(daemon.log_dir)
    modes = {
        p.name: stat.S_IMODE(p.stat().st_mode)
        for p in logs.iterdir()
        if p.name in ("twinvisor.log", "twinvisor.out") or p.name.startswith("app.")
    }
    assert {"twinvisor.log", "twinvisor.out"} <= modes.keys()
    assert any(n.startswith("app.") for n in modes), modes
    assert set(modes.values()) == {0o640}, modes


NOBODY = ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


def as_nobody(daemon: Daemon, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*NOBODY, sys.executable, "-m", "twinvisor", "--socket", daemon.socket, *args],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
        cwd="/",
    )


def test_cli_prints_the_error_of_a_403(daemon: Daemon) -> None:
    """Issue 10 item 10: a refused CLI printed nothing (rc 1) or a KeyError traceback."""
    daemon.up({"app": {"command": child("run")}})
    daemon.wait_state("app", "RUNNING")
    # let uid 65534 reach the socket: the server itself must refuse it, and say so
    for path in (daemon.root, daemon.run_dir):
        os.chmod(path, 0o711)
    os.chmod(daemon.socket, 0o666)
    for verb in ("status", "down"):
        r = as_nobody(daemon, verb)
        assert r.returncode == 1, r
        assert "uid 65534 is not allowed" in r.stderr, r
        assert "Traceback" not in r.stderr, r
    assert daemon.status()["app"]["state"] == "RUNNING"  # the refused `down` did nothing


@pytest.mark.parametrize(
    "breakage",
    [
        b"[program.app\ncommand = 'x'\n",  # TOML syntax error
        b"autorestrat = 1\n",  # unknown key
        b"[program.deep]\ncommand = 'x'\nenvironment = { A = "
        + b"[" * 20000
        + b"]" * 20000
        + b" }\n",
        b"\x00\xff\xfe binary \x80\n",  # not UTF-8
    ],
    ids=["syntax", "unknown-key", "deep", "binary"],
)
def test_status_and_down_work_while_the_config_is_broken(daemon: Daemon, breakage: bytes) -> None:
    """Issue 10 item 12: status and down exited 2 on an invalid config unless --socket."""
    daemon.up({"app": {"command": child("run")}})
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    with open(daemon.config, "ab") as f:
        f.write(b"\n" + breakage)
    r = daemon.cli("status")
    assert r.rc == 0 and "app" in r.out and "RUNNING" in r.out, r
    r = daemon.cli("down")
    assert r.rc == 0, r
    assert gone(pid)


# ---- item 11: every bad config is exit 2 with file:line: [key], never a traceback -------------

DEEP = 20_000
BIG = 50 * 1024 * 1024


def _case(tmp: Path, name: str) -> tuple[bytes, str, str, str]:
    """(config bytes, file named, line, key) of one bad config."""
    main = str(tmp / "twinvisor.toml")
    head = b'[program.a]\ncommand = "sleep 1"\n'
    if name == "deep-array":
        return (
            head + b"environment = { A = " + b"[" * DEEP + b"]" * DEEP + b" }\n",
            main,
            "3",
            "program.a.environment",
        )
    if name == "deep-table":
        return (
            head + b"environment = { A = " + b"{a=" * DEEP + b"1" + b"}" * DEEP + b" }\n",
            main,
            "3",
            "program.a.environment",
        )
    if name == "backoff-max":
        return head + b"backoff_max = 1e20\n", main, "3", "program.a.backoff_max"
    if name == "directory":
        return head + b'directory = "/' + b"d" * 900_000 + b'"\n', main, "3", "program.a.directory"
    if name == "binary":
        return head + b'stdout_file = "\xff\xfe\x00"\n', main, "3", "program.a.stdout_file"
    if name == "missing-include":
        return b'[include]\nfiles = ["gone.toml"]\n' + head, main, "2", "include.files"
    if name == "env-file":
        return head + b'env_file = "no-such.env"\n', main, "3", "program.a.env_file"
    if name == "huge":
        (tmp / "huge.toml").write_bytes(b"# padding\n" * (BIG // 10))
        return b'[include]\nfiles = ["huge.toml"]\n' + head, main, "2", "include.files"
    raise AssertionError(name)


@pytest.mark.parametrize(
    "name",
    [
        "deep-array",
        "deep-table",
        "backoff-max",
        "directory",
        "binary",
        "missing-include",
        "env-file",
        "huge",
    ],
)
def test_bad_config_is_exit_2_with_file_line_key(tmp_path: Path, name: str) -> None:
    """Issue 10 item 11: deep nesting was a RecursionError traceback, absurd values were
    accepted, and binary, a missing include, a bad env_file, a huge file named no line."""
    text, file, line, key = _case(tmp_path, name)
    config = tmp_path / "twinvisor.toml"
    config.write_bytes(text)
    r = subprocess.run(
        [sys.executable, "-m", "twinvisor", "-c", str(config), "check-config"],
        capture_output=True,
        text=True,
        timeout=120,
        stdin=subprocess.DEVNULL,
    )
    assert r.returncode == 2, r
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    where = f"{file}:{line}:" + (f" [{key}]" if key else "")
    assert where in r.stderr, r.stderr[-3000:]


def test_deep_config_is_refused_by_update_reread_and_the_api(daemon: Daemon) -> None:
    """Issue 10 item 11: POST /update answered 500 (RecursionError) on a deep config."""
    daemon.up({"app": {"command": child("run")}})
    daemon.wait_state("app", "RUNNING")
    with open(daemon.config, "ab") as f:
        f.write(
            b"\n[program.deep]\ncommand = 'x'\nenvironment = { A = "
            + b"[" * DEEP
            + b"]" * DEEP
            + b" }\n"
        )
    for verb in ("reread", "update"):
        r = daemon.cli(verb)
        assert r.rc == 2 and f"{daemon.config}:" in r.err and "Traceback" not in r.err, r
    code, body = daemon.api("POST", "/update")
    assert code == 400 and "program.deep.environment" in str(body), body
    assert daemon.status()["app"]["state"] == "RUNNING"
