"""The `twinvisor` command line end to end: verbs, exit codes, messages, the control socket."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
from pathlib import Path

from tests.support.helpers import (
    Daemon,
    child,
    config_text,
    daemon_fixture,  # noqa: F401
    gone,
    read_report,
    wait_until,
)
from twinvisor.cli.liveness import anything_running


def sleeper(daemon: Daemon, name: str, **keys: object) -> dict[str, object]:
    return {"command": child("run", "--report", daemon.path(f"rep-{name}")), **keys}


def pids(daemon: Daemon) -> dict[str, int]:
    return {n: r["pid"] for n, r in daemon.status().items()}


# ---- config errors ---------------------------------------------------------------------------


def test_check_config_errors_name_file_line_and_suggest(daemon: Daemon) -> None:
    text = config_text(daemon.run_dir, {"ok": {"command": ["true"]}})
    text += '\n[program.web]\ncomand = "x"\nstop_timeout = "soon"\n'
    daemon.write_raw(text)
    lines = text.splitlines()
    typo_line = lines.index('comand = "x"') + 1
    type_line = lines.index('stop_timeout = "soon"') + 1
    r = daemon.cli("check-config")
    assert r.rc == 2, r
    assert r.out == ""
    assert f"{daemon.config}:{typo_line}" in r.err
    assert "did you mean 'command'?" in r.err
    assert f"{daemon.config}:{type_line}" in r.err
    assert "stop_timeout" in r.err


def test_check_config_json_prints_resolved_config(daemon: Daemon) -> None:
    daemon.write_config({"w": {"command": "sleep 1", "numprocs": 2}})
    r = daemon.cli("check-config", "--json")  # the table is the default
    assert r.rc == 0, r
    data = json.loads(r.out)
    assert "w:0" in r.out and "w:1" in r.out
    assert [p["name"] for p in data["programs"]] == ["w:0", "w:1"]


def test_missing_config_file_is_usage_error(daemon: Daemon) -> None:
    r = daemon.cli("check-config")
    assert r.rc == 2
    assert daemon.config in r.err


# ---- daemon lifecycle ------------------------------------------------------------------------


def test_status_without_daemon_exits_3_quickly(daemon: Daemon) -> None:
    daemon.write_config({"p": sleeper(daemon, "p")})
    t0 = time.monotonic()
    r = daemon.cli("status")
    assert r.rc == 3, r
    # not a speed figure: the call must fail at once, not wait out a timeout (30 s and more)
    assert time.monotonic() - t0 < 10.0
    assert "no twinvisor daemon" in r.err
    assert "twinvisor up" in r.err
    for verb in (["stop", "p"], ["start", "p"], ["down"]):
        assert daemon.cli(*verb).rc == 3, verb


def test_up_twice_reports_running_daemon_and_starts_nothing(daemon: Daemon) -> None:
    daemon.up({"p": sleeper(daemon, "p")})
    before = daemon.wait_state("p", "RUNNING")["pid"]
    r = daemon.cli("up")
    assert r.rc == 0, r
    assert "already running" in r.out
    assert daemon.status()["p"]["pid"] == before
    assert len(read_report(daemon.path("rep-p"))) == 1


def test_down_stops_everything(daemon: Daemon) -> None:
    daemon.up({"a": sleeper(daemon, "a"), "t": {"command": child("tree")}})
    daemon.wait_state("a", "RUNNING")
    daemon.wait_state("t", "RUNNING")
    code, version = daemon.api("GET", "/version")
    assert code == 200
    r = daemon.cli("down")
    assert r.rc == 0, r
    assert "all programs stopped" in r.out
    assert gone(version["pid"])
    wait_until(lambda: not daemon.survivors(), timeout=3, what="no process left")
    assert daemon.cli("status").rc == 3


# ---- names -----------------------------------------------------------------------------------


def test_start_stop_restart_names_and_numprocs(daemon: Daemon) -> None:
    daemon.up({"w": sleeper(daemon, "w", numprocs=3), "s": sleeper(daemon, "s")})
    names = ["w:0", "w:1", "w:2", "s"]
    for n in names:
        daemon.wait_state(n, "RUNNING")
    assert list(daemon.status()) == names
    first = pids(daemon)
    assert len(set(first.values())) == 4

    r = daemon.cli("stop", "w:1")
    assert r.rc == 0 and "w:1: stopped" in r.out, r
    st = daemon.status()
    assert st["w:1"]["state"] == "STOPPED" and gone(first["w:1"])
    assert {n: st[n]["pid"] for n in ("w:0", "w:2", "s")} == {
        n: first[n] for n in ("w:0", "w:2", "s")
    }

    r = daemon.cli("start", "w:1")
    assert r.rc == 0 and "w:1: started (pid" in r.out, r

    r = daemon.cli("stop", "w:*")
    assert r.rc == 0, r
    st = daemon.status()
    assert [st[n]["state"] for n in names] == ["STOPPED"] * 3 + ["RUNNING"]

    r = daemon.cli("start", "all")
    assert r.rc == 0, r
    assert all(r["state"] == "RUNNING" for r in daemon.status().values())

    before = pids(daemon)
    r = daemon.cli("restart", "all")
    assert r.rc == 0, r
    after = pids(daemon)
    assert all(after[n] != before[n] for n in names)
    assert all(gone(p) for p in before.values())

    r = daemon.cli("restart", "w")  # a program name means all of its instances
    assert r.rc == 0 and r.out.count("restarted") == 3, r
    assert daemon.status()["s"]["pid"] == after["s"]

    r = daemon.cli("stop", "nosuch")
    assert r.rc == 2 and "no such program: nosuch" in r.err
    r = daemon.cli("stop", "all")
    assert r.rc == 0
    assert all(r["state"] == "STOPPED" for r in daemon.status().values())


def test_status_json_fields(daemon: Daemon) -> None:
    daemon.up({"p": sleeper(daemon, "p")})
    daemon.wait_state("p", "RUNNING")
    r = daemon.cli("status", "--json")
    assert r.rc == 0, r
    (row,) = json.loads(r.out)
    assert set(row) >= {
        "name",
        "program",
        "state",
        "pid",
        "uptime",
        "started",
        "restarts",
        "failures",
        "given_up",
        "last_exit",
        "exit_code",
        "error",
        "stdout_file",
        "stderr_file",
        "dropped_bytes",
    }
    assert row["name"] == row["program"] == "p"
    assert row["state"] == "RUNNING"
    assert isinstance(row["pid"], int) and row["uptime"] >= 0
    assert row["restarts"] == 0 and row["given_up"] is False
    assert row["stdout_file"] == os.path.join(daemon.log_dir, "p.stdout.log")
    r = daemon.cli("status", "nosuch")
    assert r.rc == 2 and "nosuch" in r.err


# ---- config changes --------------------------------------------------------------------------


def start_three(daemon: Daemon) -> tuple[dict[str, dict[str, object]], dict[str, int]]:
    """Run keep/change/drop; returns their config and their pids."""
    progs = {n: sleeper(daemon, n) for n in ("keep", "change", "drop")}
    daemon.up(progs)
    for n in progs:
        daemon.wait_state(n, "RUNNING")
    return progs, pids(daemon)


def three_then_edit(daemon: Daemon, change: dict[str, object]) -> dict[str, int]:
    """start_three, then rewrite the config: drop removed, `change` applied to change, add
    added. Returns the pids before the edit."""
    progs, before = start_three(daemon)
    del progs["drop"]
    progs["change"].update(change)
    progs["add"] = sleeper(daemon, "add")
    daemon.write_config(progs)
    return before


def test_update_restarts_only_what_changed(daemon: Daemon) -> None:
    before = three_then_edit(daemon, {"environment": {"NEW": "1"}})
    r = daemon.cli("update")
    assert r.rc == 0, r
    assert sorted(r.out.splitlines()) == ["add: added", "change: updated", "drop: removed"]
    st = daemon.status()
    assert list(st) == ["keep", "change", "add"]
    assert st["keep"]["pid"] == before["keep"]
    assert st["change"]["pid"] != before["change"] and st["change"]["state"] == "RUNNING"
    assert st["add"]["state"] == "RUNNING"
    assert gone(before["drop"]) and gone(before["change"])
    r = daemon.cli("update")
    assert r.rc == 0 and "No config updates" in r.out


def test_reread_shows_changes_without_applying(daemon: Daemon) -> None:
    before = three_then_edit(daemon, {"stop_timeout": 3})
    r = daemon.cli("reread")
    assert r.rc == 0, r
    assert sorted(r.out.splitlines()) == ["add: available", "change: changed", "drop: removed"]
    r = daemon.cli("reread", "--json")
    assert json.loads(r.out)["changes"] == {
        "added": ["add"],
        "removed": ["drop"],
        "changed": ["change"],
    }
    assert pids(daemon) == before


def test_update_with_config_errors_changes_nothing(daemon: Daemon) -> None:
    progs, before = start_three(daemon)
    daemon.write_raw(
        config_text(daemon.run_dir, {"keep": progs["keep"]}) + "\n[program.x]\nnumprocs = 0\n"
    )
    r = daemon.cli("update")
    assert r.rc == 2, r
    assert "nothing was changed" in r.err
    assert f"{daemon.config}:" in r.err and "numprocs" in r.err
    assert pids(daemon) == before
    assert daemon.cli("reread").rc == 2
    # a broken config on disk does not lock the operator out of the running daemon
    r = daemon.cli("status")
    assert r.rc == 0 and "drop" in r.out, r
    r = daemon.cli("down")
    assert r.rc == 0, r


# ---- the control socket ----------------------------------------------------------------------


def raw_request(path: str, data: bytes) -> bytes:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(path)
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except (BrokenPipeError, ConnectionResetError):
            pass  # answered and closed early: read the answer
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_control_api_rejects_bad_requests_and_keeps_answering(daemon: Daemon) -> None:
    daemon.up({"p": sleeper(daemon, "p")})
    daemon.wait_state("p", "RUNNING")
    answer = raw_request(daemon.socket, b"this is not HTTP\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 400"), answer
    body = b"x" * (1024 * 1024)
    answer = raw_request(
        daemon.socket,
        b"POST /programs/p/signal HTTP/1.1\r\nHost: t\r\nContent-Type: application/json\r\n"
        + f"Content-Length: {len(body)}\r\n\r\n".encode()
        + body,
    )
    assert answer.startswith(b"HTTP/1.1 413"), answer[:200]
    answer = raw_request(
        daemon.socket,
        b"POST /programs/p/signal HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\n{nope",
    )
    assert answer.startswith(b"HTTP/1.1 400"), answer
    assert b'"error"' in answer
    answer = raw_request(daemon.socket, b"GET /etc/passwd HTTP/1.1\r\nHost: t\r\n\r\n")
    assert answer.startswith(b"HTTP/1.1 404"), answer
    # valid JSON of the wrong shape: a 400 that names the problem, not a handler's crash
    shapes: list[object] = [[1], {"signal": None}, {"signal": 1.5}, {"signal": "NOPE"}, {}]
    for shape in shapes:
        code, reply = daemon.api("POST", "/programs/p/signal", body=shape)
        assert code == 400 and set(reply) == {"error"}, (shape, code, reply)
    assert daemon.api("POST", "/programs/p/signal", body={"signal": 0})[0] == 400
    r = daemon.cli("status")
    assert r.rc == 0 and "RUNNING" in r.out


def test_status_against_a_socket_nobody_serves_fails_fast(tmp_path: Path) -> None:
    """The guard holds the socket while a supervisor restarts; if none comes, a read must not
    hang: it says so, points at the log, and exits 3."""
    path = str(tmp_path / "s.sock")
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as held:
        held.bind(path)
        held.listen(8)  # accepting into the backlog, answering nobody
        r = subprocess.run(
            [sys.executable, "-m", "twinvisor", "--socket", path, "--timeout", "1", "status"],
            capture_output=True,
            text=True,
            timeout=30,
        )
    assert r.returncode == 3, r
    assert "did not answer within 1s" in r.stderr and "twinvisor.log" in r.stderr


def test_status_refuses_a_broken_answer_in_words(tmp_path: Path) -> None:
    """`status` reads its answer with json, not msgspec: a row of the wrong shape is still a
    one-line error naming the field (exit 1), never a traceback from the renderer."""
    path = str(tmp_path / "s.sock")
    body = b'{"programs": [{"name": "a", "program": "a", "state": "RUNNING", "pid": "7"}]}'
    answer = b"HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n%s" % (len(body), body)
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as server:
        server.bind(path)
        server.listen(8)
        cli = subprocess.Popen(
            [sys.executable, "-m", "twinvisor", "--socket", path, "status"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        server.settimeout(30)
        conn, _ = server.accept()
        with conn:
            conn.recv(65536)
            conn.sendall(answer)
        out, err = cli.communicate(timeout=30)
    assert cli.returncode == 1, (out, err)
    assert "programs[0].pid should be int, not '7'" in err and "Traceback" not in err, err
    assert "twinvisor upgrade" in err  # what to do about it


def test_logs_of_a_program_that_has_written_nothing_yet(daemon: Daemon) -> None:
    """Log files are created by a program's first output: `logs` on a quiet one says so
    (exit 0, nothing on stdout), and `logs -f` waits for the file and shows what comes."""
    go = daemon.path("go")
    script = f"while [ ! -e {go} ]; do sleep 0.05; done; echo hello; exec sleep infinity"
    daemon.up({"quiet": {"command": ["sh", "-c", script]}})
    daemon.wait_state("quiet", "RUNNING")
    log = os.path.join(daemon.log_dir, "quiet.stdout.log")
    assert not os.path.exists(log)
    r = daemon.cli("logs", "quiet")
    assert r.rc == 0 and r.out == "" and "has written nothing yet" in r.err, r
    follow = subprocess.Popen(
        [*daemon.cli_argv(), "logs", "quiet", "-f"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert follow.stdout is not None
        Path(go).touch()
        assert follow.stdout.readline() == "hello\n"
    finally:
        follow.kill()
        follow.wait(timeout=30)
    assert Path(log).read_text() == "hello\n"


def test_up_with_config_errors_says_where_and_leaves_nothing_running(daemon: Daemon) -> None:
    """`up` reads only the [daemon] table itself; the supervisor validates the rest and
    its answer is what `up` reports: exit 2, file:line: [key] (also in --json), and
    neither twin is left running."""
    daemon.write_raw(
        f'[daemon]\nrun_dir = "{daemon.run_dir}"\n\n[program.a]\ncommand = ["sleep", "1"]\n'
        "autorestrat = true\n"
    )
    r = daemon.cli("up")
    assert r.rc == 2, r
    assert f"{daemon.config}:6: [program.a.autorestrat]" in r.err and "did you mean" in r.err
    assert "Traceback" not in r.err
    r = daemon.cli("up", "--json")
    doc = json.loads(r.out)
    assert r.rc == 2 and doc["ok"] is False and doc["exit_code"] == 2, r
    assert any("program.a.autorestrat" in p for p in doc["problems"]), doc
    # the twins exit right after their answer
    wait_until(lambda: not anything_running(daemon.run_dir), 10, "the twins to exit")
    assert daemon.cli("status").rc == 3
