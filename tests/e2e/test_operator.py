"""What a new operator meets first (issue 11): run dirs per config, messages, exit codes."""

from __future__ import annotations

import json
import os
import signal
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
        assert f"config {a} " in st_a.out and "pa" in st_a.out and "pb" not in st_a.out, st_a
        assert f"config {b} " in st_b.out and "pb" in st_b.out, st_b
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
