"""twinvisor.daemon against real re-executed scripts (tests/support/scripts/lib_*.py).

Scripts report over a unix socket (lib_report) and live until the test replies, so every
wait here is on an event: a report arriving, a pidfd becoming readable, a process exiting.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.paths import SCRIPTS
from twinvisor.linux import kernel

sys.path.insert(0, str(SCRIPTS))

from lib_report import Conn, Server

PY = sys.executable
BACKGROUND = str(SCRIPTS / "lib_background.py")
DAEMON = str(SCRIPTS / "lib_daemon.py")


@pytest.fixture
def server(tmp_path: Path) -> Iterator[Server]:
    srv = Server(str(tmp_path / "report.sock"))
    yield srv
    srv.close()


def env_with(**extra: str) -> dict[str, str]:
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(SCRIPTS), env.get("PYTHONPATH", "")])
    env.update(extra)
    return env


def wait_gone(pid: int, timeout: float = 10.0) -> None:
    """Event-driven wait for a process that is not our child (its pidfd turns readable)."""
    assert kernel.wait_gone(pid, timeout), f"pid {pid} still alive after {timeout}s"


def finish(conn: Conn, pid: int, reply: str = "exit 0") -> None:
    conn.reply(reply)
    conn.close()
    wait_gone(pid)


def run_parent(args: list[str], env: dict[str, str], cwd: Path | None = None) -> str:
    proc = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True, timeout=30)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


# ------------------------------------------------------------------------- background()


def test_background_keeps_argv_env_and_detaches(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "bg.log"
    env = env_with(LIB_MARK="a b ü")
    args = [PY, BACKGROUND, server.path, str(log), "chain:1", "x y", "--flag", "ü"]
    parent = subprocess.Popen(args, env=env)
    parent_pid = parent.pid
    assert parent.wait(timeout=30) == 0  # the parent is gone once the child is running
    conn, facts = server.accept()
    assert facts["argv"] == args[1:]
    assert facts["env"] == env  # identical: the lineage token was taken out
    assert facts["pid"] != parent_pid
    assert facts["sid"] == facts["pid"] != os.getsid(0)  # new session, it leads it
    assert facts["stdin"] == "/dev/null"
    assert f"final final pid {facts['pid']}" in log.read_text()
    finish(conn, facts["pid"])


def test_second_and_third_generation(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "bg.log"
    run_parent([PY, BACKGROUND, server.path, str(log), "chain:3"], env_with())
    conn, facts = server.accept()
    lines = log.read_text().splitlines()
    pids = [int(line.split()[-1]) for line in lines if line.startswith("generation")]
    # generation k prints once in each later generation that replays it: 1+2+3 lines
    assert len(pids) == 6 and len(set(pids)) == 3
    assert pids[-1] == facts["pid"]
    assert facts["env"] == env_with()
    finish(conn, facts["pid"])


def test_sibling_children_follow_their_own_branch(server: Server, tmp_path: Path) -> None:
    """xdaemon's pitfall: the child of the parent's second call took the first call's branch."""
    log = tmp_path / "bg.log"
    run_parent([PY, BACKGROUND, server.path, str(log), "siblings"], env_with())
    first, facts1 = server.accept()
    second, facts2 = server.accept()
    assert sorted([facts1["role"], facts2["role"]]) == ["grandchild", "second-child"]
    finish(first, facts1["pid"])
    finish(second, facts2["pid"])


@pytest.mark.parametrize("how", ["module", "entry_point"])
def test_module_and_entry_point(server: Server, tmp_path: Path, how: str) -> None:
    log = tmp_path / "bg.log"
    rest = [server.path, str(log), "chain:2", "arg"]
    if how == "module":
        args = [PY, "-m", "lib_background", *rest]
        expected_argv0 = str(SCRIPTS / "lib_background.py")
    else:  # what pip writes for a [project.scripts] entry
        tool = tmp_path / "lib-tool"
        tool.write_text(f"#!{PY}\nimport sys\nfrom lib_background import main\nsys.exit(main())\n")
        tool.chmod(0o755)
        args, expected_argv0 = [str(tool), *rest], str(tool)
    run_parent(args, env_with(), cwd=SCRIPTS)
    conn, facts = server.accept()
    assert facts["argv"] == [expected_argv0, *rest]
    finish(conn, facts["pid"])


def test_umask_and_cwd(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "bg.log"
    run_parent([PY, BACKGROUND, server.path, str(log), f"steps:{tmp_path}"], env_with())
    conn, facts = server.accept()
    assert facts["cwd"] == str(tmp_path)
    assert facts["umask"] == 0o027
    finish(conn, facts["pid"])


def test_pid_file_refuses_second_copy(server: Server, tmp_path: Path) -> None:
    log, pid_file = tmp_path / "bg.log", tmp_path / "app.pid"
    args = [PY, BACKGROUND, server.path, str(log), f"pidfile:{pid_file}"]
    run_parent(args, env_with())  # the parent exited: the lock is the background child's
    conn, facts = server.accept()
    assert int(pid_file.read_text()) == facts["pid"]
    second = subprocess.run(args, env=env_with(), capture_output=True, text=True, timeout=30)
    assert second.returncode == 3
    assert second.stdout.strip() == f"already running {facts['pid']}"
    finish(conn, facts["pid"])
    third = subprocess.Popen(args, env=env_with())  # lock died with its holder: starts again
    assert third.wait(timeout=30) == 0
    conn, facts = server.accept()
    finish(conn, facts["pid"])


# ------------------------------------------------------------------------------ Daemon


def start_daemon(
    server: Server, log: Path, max_count: int, max_error: int, min_exit: float, *flags: str
) -> subprocess.Popen[bytes]:
    args = [PY, DAEMON, server.path, str(log), str(max_count), str(max_error), str(min_exit)]
    return subprocess.Popen([*args, *flags], env=env_with())


def test_daemon_stops_after_max_count(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    assert start_daemon(server, log, 2, 3, 0).wait(timeout=30) == 0
    workers = []
    for code in (0, 5, 0):  # one run, two restarts
        conn, facts = server.accept()
        workers.append(facts)
        finish(conn, facts["pid"], f"exit {code}")
    watcher = workers[0]["ppid"]
    assert all(w["ppid"] == watcher for w in workers)
    assert len({w["pid"] for w in workers}) == 3
    wait_gone(watcher)
    text = log.read_text()
    assert f"worker pid {workers[1]['pid']} exited after" in text
    assert "with exit code 5" in text
    assert "restart 2 after" in text and "restart 3" not in text
    assert "restarted 2 times (max_count): stopping" in text


def test_daemon_gives_up_after_max_error(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    # min_exit_time 1000: every run is too short, so each one is a failure
    assert start_daemon(server, log, 0, 3, 1000).wait(timeout=30) == 0
    for _ in range(3):
        conn, facts = server.accept()
        finish(conn, facts["pid"], "exit 0")
    wait_gone(facts["ppid"])
    text = log.read_text()
    assert "3 consecutive failures (max_error): giving up" in text
    assert text.count("exited after") == 3


def test_daemon_healthy_runs_reset_failures(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    proc = start_daemon(server, log, 3, 1, 0, "--foreground")
    for code in (1, 2, 3, 0):  # min_exit_time 0: no run fails, so max_error=1 never trips
        conn, facts = server.accept()
        finish(conn, facts["pid"], f"exit {code}")
    assert proc.wait(timeout=30) == 0
    assert "consecutive failures 0/1" in log.read_text()


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGINT])
def test_daemon_forwards_stop_signal(server: Server, tmp_path: Path, sig: int) -> None:
    log = tmp_path / "d.log"
    proc = start_daemon(server, log, 0, 3, 0, "--foreground")
    conn, facts = server.accept()
    assert facts["ppid"] == proc.pid and facts["pgid"] == facts["pid"]  # own group
    proc.send_signal(sig)
    assert proc.wait(timeout=30) == 0  # the worker died of the forwarded signal, then we left
    wait_gone(facts["pid"])
    conn.close()
    text = log.read_text()
    assert f"stopped by signal {int(sig)}" in text
    assert f"with signal {int(sig)}" in text


def test_daemon_kills_a_worker_that_outlives_stop_timeout(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    proc = start_daemon(server, log, 0, 3, 0, "--foreground", "--ignore-term")
    conn, facts = server.accept()  # reported after it set SIGTERM to ignored
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(timeout=30) == 0
    wait_gone(facts["pid"])
    conn.close()
    text = log.read_text()
    assert "stopped by signal 15" in text and "with signal 9" in text


def test_daemon_in_background_stops_on_sigterm(server: Server, tmp_path: Path) -> None:
    log = tmp_path / "d.log"
    assert start_daemon(server, log, 0, 3, 0).wait(timeout=30) == 0
    conn, facts = server.accept()
    os.kill(facts["ppid"], signal.SIGTERM)
    wait_gone(facts["ppid"])
    wait_gone(facts["pid"])
    conn.close()
    assert "stopped by signal 15" in log.read_text()
