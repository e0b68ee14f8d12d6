"""What a new operator meets first (issue 11): run dirs per config, messages, exit codes."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
    gone,
    toml_value,
    wait_until,
)
from twinvisor.errors import ControlError


def _sleeper_config(daemon: Daemon, name: str) -> str:
    """A config without a [daemon] table: the run dir is the default one."""
    cmd = toml_value(child("run", "--report", daemon.path(f"rep-{name}")))
    return f"[program.{name}]\ncommand = {cmd}\nmin_uptime = 0.2\n"


def test_two_configs_in_one_folder_are_two_daemons(daemon: Daemon) -> None:
    a, b = daemon.path("a.toml"), daemon.path("b.toml")
    with open(a, "w") as f:
        f.write(_sleeper_config(daemon, "pa"))
    with open(b, "w") as f:
        f.write(_sleeper_config(daemon, "pb"))
    try:
        up_a = daemon.cli("-c", a, "up")
        assert up_a.rc == 0, up_a
        up_b = daemon.cli("-c", b, "up")
        assert up_b.rc == 0, up_b
        assert "already running" not in up_b.out
        st_a, st_b = daemon.cli("-c", a, "status"), daemon.cli("-c", b, "status")
        # the programs by the NAME column: a substring test met "pb" in a random tmp dir name
        names_a = [line.split()[0] for line in st_a.out.splitlines()[2:] if line.strip()]
        names_b = [line.split()[0] for line in st_b.out.splitlines()[2:] if line.strip()]
        assert f"config {a} " in st_a.out and names_a == ["pa"], st_a
        assert f"config {b} " in st_b.out and names_b == ["pb"], st_b
        assert daemon.cli("-c", b, "down").rc == 0
        assert daemon.cli("-c", b, "status").rc == 3
        assert daemon.cli("-c", a, "status").rc == 0  # a's daemon was not touched
    finally:
        for path in (a, b):
            daemon.cli("-c", path, "down")


def test_config_lookup_order_is_one_and_the_error_lists_it(daemon: Daemon) -> None:
    env = {k: v for k, v in daemon.env.items() if k != "TWINVISOR_CONFIG"}
    cwd = daemon.path()

    def run(*args: str, **extra: str) -> subprocess.CompletedProcess[str]:
        argv = [sys.executable, "-m", "twinvisor", *args]
        return subprocess.run(
            argv, env={**env, **extra}, cwd=cwd, capture_output=True, text=True, timeout=30
        )

    r = run("status")
    assert r.returncode == 2, r
    for tried in ("-c", "$TWINVISOR_CONFIG", "./twinvisor.toml", "/etc/twinvisor/twinvisor.toml"):
        assert tried in r.stderr, r.stderr
    with open(os.path.join(cwd, "env.toml"), "w") as f:
        f.write(_sleeper_config(daemon, "e"))
    with open(os.path.join(cwd, "twinvisor.toml"), "w") as f:
        f.write(_sleeper_config(daemon, "c"))
    # $TWINVISOR_CONFIG before ./twinvisor.toml; -c before both
    checked = run("check-config", "--json", TWINVISOR_CONFIG="env.toml")
    assert '"e"' in checked.stdout and '"c"' not in checked.stdout, checked
    assert '"c"' in run("check-config", "--json").stdout
    r = run("-c", "env.toml", "check-config", "--json", TWINVISOR_CONFIG="twinvisor.toml")
    assert '"e"' in r.stdout


def test_unknown_program_names_are_usage_errors_with_a_suggestion(daemon: Daemon) -> None:
    daemon.up({"web": {"command": child("run")}, "worker": {"command": child("run")}})
    daemon.wait_state("web", "RUNNING")
    for verb in (["restart", "wbe"], ["stop", "wbe"], ["status", "wbe"], ["signal", "HUP", "wbe"]):
        r = daemon.cli(*verb)
        assert r.rc == 2, (verb, r)
        assert "no such program: wbe (did you mean 'web'?)" in r.err, (verb, r)
    r = daemon.cli("start", "zzz")
    assert r.rc == 2 and "programs: web, worker" in r.err, r


def test_start_on_a_running_program_says_already_running(daemon: Daemon) -> None:
    daemon.up({"web": {"command": child("run")}, "off": {"command": child("run")}})
    pid = daemon.wait_state("web", "RUNNING")["pid"]
    daemon.wait_state("off", "RUNNING")
    assert daemon.cli("stop", "off").rc == 0
    r = daemon.cli("start", "web")
    assert r.rc == 0, r
    assert r.out.strip() == f"web: already running (pid {pid})"
    r = daemon.cli("start", "all")
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert f"web: already running (pid {pid})" in lines
    assert any(line.startswith("off: started (pid ") for line in lines), lines
    r = daemon.cli("stop", "off")
    assert r.rc == 0 and daemon.cli("stop", "off").out.strip() == "off: already stopped", r


def _supervisor_pid(daemon: Daemon) -> int | None:
    try:
        code, body = daemon.api("GET", "/version")
    except ControlError:
        return None
    return int(body["pid"]) if code == 200 else None


def test_counters_count_manual_restarts_survive_takeovers_and_reset_after_down(
    daemon: Daemon,
) -> None:
    daemon.up({"p": {"command": child("run")}})
    first = daemon.wait_state("p", "RUNNING")["pid"]
    assert daemon.cli("restart", "p").rc == 0
    row = daemon.wait_state("p", "RUNNING", where=lambda r: r["pid"] != first)
    assert row["restarts"] == 1  # a restart asked for counts
    os.kill(row["pid"], signal.SIGKILL)
    row = daemon.wait_state("p", "RUNNING", where=lambda r: r["restarts"] == 2)
    assert row["last_exit"] == "killed by SIGKILL"
    text = daemon.cli("status").out
    assert "previous run: killed by SIGKILL" in text, text  # not beside RUNNING as if current
    state_file = Path(daemon.run_dir, "state.json")
    wait_until(lambda: "last_exits" in state_file.read_text(), what="counters persisted")
    old = _supervisor_pid(daemon)
    assert old is not None
    os.kill(old, signal.SIGKILL)  # a takeover keeps RESTARTS and LAST EXIT
    wait_until(lambda: gone(old) and _supervisor_pid(daemon) not in (None, old), timeout=30)
    row = daemon.status()["p"]
    assert (row["restarts"], row["last_exit"]) == (2, "killed by SIGKILL")
    assert daemon.cli("down").rc == 0
    saved = json.loads(state_file.read_text())
    assert not saved.get("restarts") and not saved.get("last_exits"), saved
    daemon.up({"p": {"command": child("run")}})  # a fresh start: fresh counters
    row = daemon.wait_state("p", "RUNNING")
    assert (row["restarts"], row["last_exit"]) == (0, None)


def test_check_config_prints_a_table_and_warnings_json_behind_the_flag(daemon: Daemon) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        daemon.write_config(
            {
                "web": {
                    "command": ["nosuch-command-xyz", "--serve"],
                    "listen_addrs": [f"127.0.0.1:{port}"],
                    "ready": "delay:0.5",
                },
                "gone": {"command": child("run"), "directory": daemon.path("missing")},
                "who": {"command": child("run"), "numprocs": 2},
            }
        )
        r = daemon.cli("check-config")
        data = json.loads(daemon.cli("check-config", "--json").out)
    assert r.rc == 0, r  # warnings, not errors: the file is valid
    lines = r.out.splitlines()
    assert lines[0].split() == ["PROGRAM", "INSTANCES", "COMMAND", "SOCKETS", "READY"], r.out
    assert any(line.split()[:2] == ["who", "2"] for line in lines), r.out
    assert f"127.0.0.1:{port}" in r.out and "delay 0.5s" in r.out
    assert len(r.out.splitlines()) < 20  # a summary, not the resolved config
    for warning in (
        "web: command 'nosuch-command-xyz' is not found on PATH",
        f"web: listen_addrs '127.0.0.1:{port}': cannot bind now",
        f"gone: directory {daemon.path('missing')} does not exist",
    ):
        assert warning in r.out, (warning, r.out)
    assert [p["name"] for p in data["programs"]] == ["web", "gone", "who:0", "who:1"]
    assert any("nosuch-command-xyz" in w for w in data["warnings"])
    # an unknown user is an error of the file (exit 2, at its line), not only a warning
    daemon.write_config({"who": {"command": child("run"), "user": "nosuch-user-xyz"}})
    r = daemon.cli("check-config")
    assert r.rc == 2 and "nosuch-user-xyz" in r.err and "does not exist" in r.err, r


def _labelled_pids(text: str) -> dict[str, int]:
    found = {}
    for line in text.splitlines():
        label, _, value = line.strip().partition(":")
        if label in ("supervisor pid", "guard pid") and value.strip().isdigit():
            found[label] = int(value)
    return found


def test_up_prints_supervisor_and_guard_pids_labelled(daemon: Daemon) -> None:
    first = daemon.up({"p": {"command": child("run")}})
    pids = _labelled_pids(first.out)
    assert set(pids) == {"supervisor pid", "guard pid"}, first.out
    assert pids["supervisor pid"] == _supervisor_pid(daemon)
    guard_file = Path(daemon.run_dir, "guard.pid").read_text().strip()
    assert pids["guard pid"] == int(guard_file)
    second = daemon.cli("up")
    assert second.rc == 0 and "already running" in second.out, second
    assert _labelled_pids(second.out) == pids  # the same two, labelled the same way


def test_up_foreground_with_a_daemon_running_says_where_and_fails(daemon: Daemon) -> None:
    daemon.up({"p": {"command": child("run")}})
    r = daemon.cli("up", "--foreground", timeout=30)
    assert r.rc == 1, r  # not 3 ("no daemon running"): documented in the README
    assert "a daemon already runs for" in r.err and daemon.config in r.err, r
    assert "supervisor pid:" in r.err and "guard pid:" in r.err and daemon.socket in r.err
    assert "down" in r.err
    assert daemon.status()["p"]["state"] == "RUNNING"  # the running one untouched


def test_a_busy_port_fails_only_its_program_and_up_says_so(daemon: Daemon) -> None:
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", 0))
        foreign.listen()
        port = foreign.getsockname()[1]
        daemon.write_config(
            {
                "web": {"command": child("run"), "listen_addrs": [f"127.0.0.1:{port}"]},
                "other": {"command": child("run")},
            }
        )
        r = daemon.cli("up")
        assert r.rc == 1, r  # the daemon is up, one program is not
        assert "supervisor pid:" in r.out, r
        assert "not started:    web" in r.err and "in use" in r.err, r
        assert "keeps running" in r.err
        rows = daemon.status()
        assert rows["other"]["state"] == "RUNNING"
        assert rows["web"]["state"] == "FATAL", rows["web"]
        assert f"127.0.0.1:{port}" in rows["web"]["error"] and "in use" in rows["web"]["error"]
    # the port is free again: starting it now works, in the same daemon
    assert daemon.cli("start", "web").rc == 0
    assert daemon.status()["web"]["state"] == "RUNNING"


def test_no_daemon_running_either_way_and_a_stale_socket_is_cleaned(daemon: Daemon) -> None:
    daemon.up({"p": {"command": child("run")}})
    pid = daemon.wait_state("p", "RUNNING")["pid"]
    guard = int(Path(daemon.run_dir, "guard.pid").read_text())
    supervisor = _supervisor_pid(daemon)
    assert supervisor is not None
    for sig in (signal.SIGSTOP, signal.SIGKILL):  # both at once: neither revives the other
        os.kill(guard, sig)
        os.kill(supervisor, sig)
    wait_until(lambda: gone(guard) and gone(supervisor), what="both twins gone")
    assert os.path.exists(daemon.socket)  # left behind by kill -9
    r = daemon.cli("status")
    assert r.rc == 3 and "no daemon running" in r.err, r
    assert "removed its stale socket" in r.err
    assert not os.path.exists(daemon.socket)
    r = daemon.cli("down")
    assert r.rc == 3 and "no daemon running" in r.err, r
    os.kill(pid, signal.SIGKILL)  # the orphaned program (the fixture checks nothing is left)
    wait_until(lambda: gone(pid), what="program gone")


def test_every_json_output_is_json_errors_included(daemon: Daemon) -> None:
    daemon.write_config({"p": {"command": child("run")}})
    for verb in (["status"], ["down"], ["restart", "p"], ["signal", "HUP", "p"], ["upgrade"]):
        r = daemon.cli("--json", *verb)
        doc = json.loads(r.out)
        assert (doc["ok"], doc["exit_code"], r.rc) == (False, 3, 3), (verb, r)
        assert "no daemon running" in doc["error"]
    r = daemon.cli("--json", "up")
    doc = json.loads(r.out)
    assert (
        doc["ok"] is True
        and doc["exit_code"] == 0
        and any("supervisor pid" in line for line in doc["output"])
    ), doc
    assert isinstance(json.loads(daemon.cli("--json", "status").out), list)  # its own shape
    r = daemon.cli("--json", "restart", "wbe")
    doc = json.loads(r.out)
    assert (doc["exit_code"], r.rc) == (2, 2) and "no such program" in doc["error"]
    assert json.loads(daemon.cli("--json", "down").out)["ok"] is True
    daemon.write_raw("[program.p]\ncomand = 'x'\n")
    r = daemon.cli("--json", "check-config")
    doc = json.loads(r.out)
    assert doc["exit_code"] == 2, doc
    assert any("did you mean 'command'?" in p for p in doc["problems"]), doc
    assert json.loads(daemon.cli("--json", "version").out)["output"][0].startswith("twinvisor ")


def test_foreground_prints_program_state_changes_as_they_happen(daemon: Daemon) -> None:
    daemon.write_config(
        {
            "good": {"command": child("run")},
            "bad": {
                "command": [sys.executable, "-c", "import sys; sys.exit(3)"],
                "max_retry": 1,
            },
        }
    )
    proc = subprocess.Popen(
        [*daemon.cli_argv(), "up", "--foreground"],
        env=daemon.env,
        stdin=subprocess.DEVNULL,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    lines: list[str] = []
    wanted = ("good: ready (pid", "bad: gave up")
    try:
        assert proc.stderr is not None
        for line in proc.stderr:  # bounded: the test fails on its own timeout otherwise
            lines.append(line.rstrip())
            if all(any(w in seen for seen in lines) for w in wanted):
                break
    finally:
        proc.send_signal(signal.SIGTERM)  # Ctrl-C / docker stop: the whole daemon ends
        proc.wait(timeout=60)
        if proc.stderr is not None:
            proc.stderr.close()
    text = "\n".join(lines)
    for expected in (
        "good: started (pid",
        "good: ready (pid",
        "bad: pid ",
        "exited with code 3",
        "bad: restarting in ",
        "bad: gave up (FATAL)",
    ):
        assert expected in text, (expected, text)
