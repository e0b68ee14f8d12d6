"""Sockets passed at fd 3+, readiness, watchdog, health checks, depends_on and zero-downtime
restarts, with real processes through the real `twinvisor` command.

Children (tests/support/sock_children.py) write their start / ready / stopping / exit events with
`time.monotonic_ns()` (one clock for every process) into a shared file; orders are checked from
those records. Tests wait on a record or a state with a deadline, never on a fixed sleep.
"""

from __future__ import annotations

import itertools
import json
import os
import pwd
import re
import signal
import socket
import stat
import subprocess
import sys
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

import psutil
import pytest

from tests.support.helpers import (
    Daemon,
    Load,
    child,
    daemon_fixture,  # noqa: F401
    free_port,
    gone,
    http_get,
    read_report,
    wait_report,
    wait_until,
)
from tests.support.paths import EXAMPLES, SOCK_CHILDREN, SRC

WEBSERVER = str(EXAMPLES / "webserver.py")

Events = list[dict[str, Any]]


def sock_child(mode: str, *args: str) -> list[str]:
    return [sys.executable, SOCK_CHILDREN, mode, *args]


def pids_with(events: Events, kind: str) -> list[int]:
    return [int(e["pid"]) for e in events if e["event"] == kind]


def at(events: Events, pid: int, kind: str) -> int:
    """monotonic_ns of `pid`'s first `kind` event."""
    return next(int(e["ns"]) for e in events if e["pid"] == pid and e["event"] == kind)


def has(kind: str, pid: int) -> Callable[[Events], bool]:
    return lambda ev: any(e["pid"] == pid and e["event"] == kind for e in ev)


def daemon_log(daemon: Daemon) -> str:
    try:
        return Path(daemon.log_dir, "twinvisor.log").read_text()
    except FileNotFoundError:
        return ""


def serve_program(daemon: Daemon, port: int, *extra: str, **keys: Any) -> dict[str, Any]:
    events = daemon.path("events")
    return {
        "command": sock_child("serve", "--events", events, *extra),
        "listen_addrs": [f"127.0.0.1:{port}"],
        "ready": "notify",
        "ready_timeout": 10,
        **keys,
    }


# ---- what the child sees ----------------------------------------------------------------------


def test_child_sees_exactly_fds_0_to_4_and_the_systemd_variables(daemon: Daemon) -> None:
    port = free_port()
    unix_path = daemon.path("app.sock")
    out = daemon.path("fds.json")
    daemon.up(
        {
            "app": {
                "command": sock_child("fds", out),
                "listen_addrs": [f"127.0.0.1:{port}", f"unix:{unix_path}"],
                "socket_mode": "0660",
                "ready": "notify",
                "ready_timeout": 10,
            }
        }
    )
    row = daemon.wait_state("app", "RUNNING")
    seen = json.loads(Path(out).read_text())

    assert seen["pid"] == row["pid"]
    assert seen["fds"] == [0, 1, 2, 3, 4]
    env = seen["env"]
    assert env["LISTEN_FDS"] == "2"
    assert env["LISTEN_FDNAMES"] == "app:app"
    assert env["LISTEN_PID"] == str(seen["pid"])  # the child's own pid, not the trampoline's
    assert re.fullmatch(r"@twinvisor/[0-9a-f]{32}/notify", env["NOTIFY_SOCKET"])  # abstract

    tcp, unix = seen["sockets"]["3"], seen["sockets"]["4"]
    assert tcp["family"] == socket.AF_INET and tcp["type"] == socket.SOCK_STREAM
    assert tcp["name"] == ["127.0.0.1", port]
    assert tcp["listening"] is True
    assert tcp["inheritable"] is True  # fds 3, 4 survive the exec, nothing else does
    assert unix["family"] == socket.AF_UNIX and unix["name"] == unix_path
    assert unix["listening"] is True

    st = os.stat(unix_path)
    assert stat.S_ISSOCK(st.st_mode)
    assert stat.S_IMODE(st.st_mode) == 0o660

    # the same socket, seen from here: fd 3 of the child is bound to the configured address
    proc_fd = f"/proc/{seen['pid']}/fd/3"
    inode = os.readlink(proc_fd)
    assert inode.startswith("socket:[")
    with socket.create_connection(("127.0.0.1", port), timeout=5):
        pass  # the kernel accepts on the daemon's socket even though nobody calls accept()


def test_systemd_app_runs_unchanged_on_the_passed_socket(daemon: Daemon) -> None:
    port, own_port = free_port(), free_port()
    daemon.up(
        {
            "web": {
                # --port is what it would bind on its own: it must use the passed socket instead
                "command": [sys.executable, WEBSERVER, "--port", str(own_port)],
                "listen_addrs": [f"127.0.0.1:{port}"],
                "ready": "notify",
                "ready_timeout": 10,
            }
        }
    )
    row = daemon.wait_state("web", "RUNNING")
    status, body = http_get(port)
    assert status == 200 and json.loads(body) == {"msg": "running"}
    assert http_get(port, "/pid") == (200, str(row["pid"]).encode())
    assert http_get(port, "/hello?name=Ann") == (200, b"hello, Ann")
    listening = {
        c.laddr.port
        for c in psutil.Process(row["pid"]).net_connections("inet")
        if c.status == psutil.CONN_LISTEN
    }
    assert listening == {port}  # it did not bind --port itself
    with pytest.raises(ConnectionRefusedError):
        socket.create_connection(("127.0.0.1", own_port), timeout=5).close()


# ---- readiness ----------------------------------------------------------------------------------


def test_notify_gates_running_status_text_and_foreign_notify_ignored(daemon: Daemon) -> None:
    port = free_port()
    gate = daemon.path("gate")
    os.mkfifo(gate)
    events = daemon.path("events")
    daemon.up({"app": {**serve_program(daemon, port, "--gate", gate), "autostart": False}})
    starter = subprocess.Popen(
        [*daemon.cli_argv(), "start", "app"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        row = daemon.wait_state("app", "STARTING", where=lambda r: r["status_text"] is not None)
        assert row["status_text"] == "waiting for gate"
        pid = row["pid"]
        wait_report(events, has("gate-waiting", pid))
        r = daemon.cli("status", "--json")
        (shown,) = json.loads(r.out)
        assert shown["state"] == "STARTING" and shown["status_text"] == "waiting for gate"

        # READY=1 from a process that is not the program's (this test) changes nothing
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as s:
            name = psutil.Process(pid).environ()["NOTIFY_SOCKET"]
            s.sendto(b"READY=1\nSTATUS=forged", "\0" + name[1:])
        wait_until(
            lambda: f"notify from pid {os.getpid()} ignored" in daemon_log(daemon),
            what="the daemon to log the ignored notify",
        )
        row = daemon.status()["app"]
        assert row["state"] == "STARTING" and row["status_text"] == "waiting for gate"
        assert starter.poll() is None  # `start` still waits for readiness

        with open(gate, "w") as f:
            f.write("go\n")
        row = daemon.wait_state("app", "RUNNING")
        assert row["pid"] == pid and row["status_text"] == "serving"
        out, err = starter.communicate(timeout=30)
        assert starter.returncode == 0, (out, err)
        assert f"app: started (pid {pid})" in out
        assert http_get(port) == (200, str(pid).encode())
    finally:
        if starter.poll() is None:
            starter.kill()
            starter.communicate()


@pytest.mark.parametrize("behaviour", ["hang", "crash"])
def test_failed_handover_leaves_the_old_generation_serving(daemon: Daemon, behaviour: str) -> None:
    port = free_port()
    control = daemon.path("behaviour")
    events = daemon.path("events")
    daemon.up({"web": serve_program(daemon, port, "--behaviour", control, ready_timeout=1)})
    old = daemon.wait_state("web", "RUNNING")["pid"]
    assert http_get(port) == (200, str(old).encode())

    Path(control).write_text(behaviour)
    r = daemon.cli("restart", "web")
    assert r.rc != 0, r
    assert "web: ERROR: not restarted" in r.out, r
    assert "previous generation keeps serving" in r.out, r

    ev = read_report(events)
    (new,) = [p for p in pids_with(ev, "start") if p != old]
    row = daemon.status()["web"]
    assert row["state"] == "RUNNING" and row["pid"] == old
    assert not has("stopping", old)(ev)
    wait_until(lambda: gone(new), what="the failed generation to be gone")
    for _ in range(20):  # only the old generation answers now
        assert http_get(port) == (200, str(old).encode())

    # and once the program is fixed, a restart goes through
    Path(control).write_text("")
    r = daemon.cli("restart", "web")
    assert r.rc == 0, r
    assert daemon.pid("web") not in (old, new)


# ---- watchdog and health ------------------------------------------------------------------------


def test_watchdog_restarts_a_hung_program(daemon: Daemon) -> None:
    port = free_port()
    events = daemon.path("events")
    daemon.up({"web": serve_program(daemon, port, "--watchdog", watchdog_sec=0.5)})
    first = daemon.wait_state("web", "RUNNING")["pid"]
    os.kill(first, signal.SIGUSR1)  # it stops pinging, as a hung program would
    row = daemon.wait_state("web", "RUNNING", where=lambda r: r["pid"] not in (None, first))
    assert row["restarts"] == 1
    assert "watchdog" in (row["error"] or "")
    ev = wait_report(events, has("exit", first))
    assert at(ev, first, "hung") < at(ev, first, "stopping")
    assert http_get(port) == (200, str(row["pid"]).encode())


def test_health_check_restarts_an_unhealthy_program(daemon: Daemon) -> None:
    port = free_port()
    events = daemon.path("events")
    health = {"http": f"http://127.0.0.1:{port}/health", "interval": 0.1, "timeout": 2}
    daemon.up({"web": serve_program(daemon, port, health={**health, "failures": 2})})
    first = daemon.wait_state("web", "RUNNING", where=lambda r: r["healthy"] is True)["pid"]
    os.kill(first, signal.SIGUSR2)  # /health answers 500 from now on
    row = daemon.wait_state(
        "web", "RUNNING", where=lambda r: r["pid"] not in (None, first) and r["healthy"] is True
    )
    ev = wait_report(events, has("exit", first))
    assert "failed health checks" in (row["error"] or "")
    # the replacement was started (and ready) before the unhealthy one was told to stop
    assert at(ev, row["pid"], "ready") < at(ev, first, "stopping")


# ---- restart order ---------------------------------------------------------------------------


@pytest.mark.parametrize("stop_first", [True, False])
def test_stop_before_restart_order(daemon: Daemon, stop_first: bool) -> None:
    port = free_port()
    events = daemon.path("events")
    daemon.up({"web": serve_program(daemon, port, stop_before_restart=stop_first)})
    old = daemon.wait_state("web", "RUNNING")["pid"]
    r = daemon.cli("restart", "web")
    assert r.rc == 0, r
    new = daemon.pid("web")
    ev = wait_report(events, has("exit", old))
    if stop_first:
        assert at(ev, old, "exit") < at(ev, new, "start")
    else:
        assert at(ev, new, "start") < at(ev, new, "ready") < at(ev, old, "stopping")
        assert at(ev, new, "start") < at(ev, old, "exit")


def test_depends_on_start_stop_and_restart_order(daemon: Daemon) -> None:
    events = daemon.path("events")

    def prog(name: str, **keys: Any) -> dict[str, Any]:
        argv = sock_child("serve", "--events", events, "--name", name)
        return {"command": argv, "ready": "notify", "ready_timeout": 10, **keys}

    daemon.up({"app": prog("app", depends_on=["db"]), "db": prog("db")})
    db1, app1 = daemon.pid("db"), daemon.pid("app")
    ev = read_report(events)
    assert at(ev, db1, "ready") < at(ev, app1, "start")

    r = daemon.cli("restart", "db")
    assert r.rc == 0, r
    row = daemon.wait_state("app", "RUNNING", where=lambda r: r["pid"] != app1)
    db2, app2 = daemon.pid("db"), row["pid"]
    assert db2 != db1
    ev = wait_report(events, lambda ev: has("exit", db1)(ev) and has("exit", app1)(ev))
    # the dependency's new generation is ready before the dependent restarts
    assert at(ev, db2, "ready") < at(ev, app2, "start")

    r = daemon.cli("stop", "db")
    assert r.rc == 0, r
    ev = wait_report(events, lambda ev: has("exit", db2)(ev) and has("exit", app2)(ev))
    assert daemon.status()["app"]["state"] == "STOPPED"
    assert at(ev, app2, "exit") < at(ev, db2, "stopping")  # the dependent stops first


def serving_counts(events: Events) -> list[int]:
    """How many processes serve (between their ready and stopping) after every event."""
    changes = sorted(
        (int(e["ns"]), 1 if e["event"] == "ready" else -1)
        for e in events
        if e["event"] in ("ready", "stopping")
    )
    counts, n = [], 0
    for _, delta in changes:
        n += delta
        counts.append(n)
    return counts


@pytest.mark.parametrize(("stop_first", "floor"), [(True, 2), (False, 3)])
def test_rolling_restart_of_three_instances(daemon: Daemon, stop_first: bool, floor: int) -> None:
    port = free_port()
    events = daemon.path("events")
    prog = serve_program(daemon, port, numprocs=3, restart_batch=1, stop_before_restart=stop_first)
    daemon.up({"web": prog})
    names = ["web:0", "web:1", "web:2"]
    old = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in names}
    r = daemon.cli("restart", "web")
    assert r.rc == 0, r
    new = {n: daemon.pid(n) for n in names}
    assert not set(old.values()) & set(new.values())
    ev = wait_report(events, lambda ev: all(has("exit", p)(ev) for p in old.values()))
    counts = serving_counts(ev)
    assert counts[2] == 3  # the first three ready events
    assert min(counts[2:]) >= floor, counts
    # one instance at a time, in order
    for a, b in itertools.pairwise(names):
        assert at(ev, old[a], "exit") < at(ev, new[b], "start")


# ---- under load --------------------------------------------------------------------------------


def more_replies(load: Load, before: int) -> bool:
    return load.ok > before


def test_restarts_under_http_load_lose_no_request(daemon: Daemon) -> None:
    port = free_port()
    daemon.up(
        {
            "web": {
                "command": [sys.executable, WEBSERVER],
                "listen_addrs": [f"127.0.0.1:{port}"],
                "ready": "notify",
                "ready_timeout": 10,
            }
        }
    )
    pids = [daemon.wait_state("web", "RUNNING")["pid"]]
    load = Load(port, "/", lambda body: json.loads(body) == {"msg": "running"})
    load.start()
    try:
        wait_until(lambda: load.ok > 0, what="the first reply")
        for _ in range(5):
            r = daemon.cli("restart", "web")
            assert r.rc == 0, r
            pids.append(daemon.pid("web"))
            before = load.ok
            wait_until(partial(more_replies, load, before), what="a reply from the new generation")
    finally:
        load.done.set()
        load.join(timeout=30)
    assert len(set(pids)) == 6
    assert (load.failed, load.refused) == (0, 0), load.errors[:5]
    assert load.ok > 0


def test_http_ready_probe_through_the_shared_socket_is_refused(daemon: Daemon) -> None:
    """The old generation would answer a probe sent through the shared socket, so the config
    refuses it (file:line:key) and points to notify instead."""
    port = free_port()
    ready = f"http://127.0.0.1:{port}/health"
    control = daemon.path("behaviour")
    daemon.write_config({"web": serve_program(daemon, port, "--behaviour", control, ready=ready)})
    r = daemon.cli("check-config")
    assert r.rc == 2
    assert "program.web.ready" in r.err and "cannot tell generations apart" in r.err
    assert 'ready = "notify"' in r.err


def test_ready_from_the_old_generation_does_not_make_the_new_one_ready(daemon: Daemon) -> None:
    port = free_port()
    control = daemon.path("behaviour")
    events = daemon.path("events")
    prog = serve_program(daemon, port, "--behaviour", control, "--repeat-ready", "0.05")
    daemon.up({"web": {**prog, "ready_timeout": 2}})
    old = daemon.wait_state("web", "RUNNING")["pid"]
    Path(control).write_text("hang")  # the new generation never sends READY=1
    r = daemon.cli("restart", "web", "--timeout", "10")
    ev = read_report(events)
    new = [p for p in pids_with(ev, "start") if p != old]
    assert not any(has("ready", p)(ev) for p in new)
    assert r.rc != 0, f"restart reported success: {r.out}"
    row = daemon.status()["web"]
    assert row["pid"] == old and row["state"] == "RUNNING"


@pytest.mark.skipif(os.geteuid() != 0, reason="socket_owner needs root")
def test_unix_socket_owner_and_mode(daemon: Daemon) -> None:
    import pwd

    nobody = pwd.getpwnam("nobody")
    path = daemon.path("owned.sock")
    daemon.up(
        {
            "app": {
                "command": sock_child("fds", daemon.path("fds.json")),
                "listen_addrs": [f"unix:{path}"],
                "socket_mode": "0640",
                "socket_owner": "nobody",
                "ready": "notify",
                "ready_timeout": 10,
            }
        }
    )
    daemon.wait_state("app", "RUNNING")
    st = os.stat(path)
    assert (st.st_uid, st.st_gid) == (nobody.pw_uid, nobody.pw_gid)
    assert stat.S_IMODE(st.st_mode) == 0o640


def test_rolling_restart_stops_at_the_first_failure(daemon: Daemon) -> None:
    port = free_port()
    control = daemon.path("behaviour")
    daemon.up({"web": serve_program(daemon, port, "--behaviour", control, numprocs=3)})
    names = ["web:0", "web:1", "web:2"]
    old = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in names}
    Path(control).write_text("crash")
    r = daemon.cli("restart", "web")
    assert r.rc != 0, r
    assert "web:0: ERROR: not restarted" in r.out, r
    status = daemon.status()
    # the failed instance kept its old generation, the others were not touched
    assert {n: (status[n]["state"], status[n]["pid"]) for n in names} == {
        n: ("RUNNING", old[n]) for n in names
    }
    ev = read_report(daemon.path("events"))
    assert len([p for p in pids_with(ev, "start") if p not in old.values()]) == 1


@pytest.mark.parametrize(
    "how",
    [
        "start app",
        "up",
    ],
)
def test_depends_on_healthy_waits_for_a_passed_health_check(daemon: Daemon, how: str) -> None:
    port = free_port()
    events = daemon.path("events")
    health = {"http": f"http://127.0.0.1:{port}/health", "interval": 0.2, "failures": 2}
    db = serve_program(daemon, port, "--name", "db", health=health)
    app = {
        "command": sock_child("serve", "--events", events, "--name", "app"),
        "depends_on": ["db:healthy"],
    }
    if how == "up":
        daemon.up({"app": app, "db": db})
    else:
        daemon.up({"app": {**app, "autostart": False}, "db": {**db, "autostart": False}})
        r = daemon.cli("start", "app")
        assert r.rc == 0, r
    db_pid, app_pid = daemon.pid("db"), daemon.pid("app")
    assert daemon.status()["db"]["healthy"] is True
    # RUNNING comes min_uptime after the spawn, which a loaded machine can reach before the app
    # has written its start event: wait for the event, then check the order
    ev = wait_report(events, has("start", app_pid))
    assert at(ev, db_pid, "ready") < at(ev, db_pid, "health-ok") < at(ev, app_pid, "start")


def test_notify_works_for_a_program_running_as_another_user(daemon: Daemon) -> None:
    """user = "nobody" cannot enter the 0700 run dir: the notify socket is abstract, and the
    sender's kernel-attested pid (a process of the program) is what makes it trusted."""
    if os.geteuid() != 0:
        pytest.skip("dropping privileges needs root")
    code = (
        "import time; from twinvisor import sd; "
        "sd.notify('READY=1\\nSTATUS=as nobody'); time.sleep(1000)"
    )
    src = str(SRC)
    daemon.up(
        {
            "app": {
                "command": ["/usr/bin/python3", "-c", code],
                "environment": {"PYTHONPATH": src},
                "user": "nobody",
                "ready": "notify",
                "ready_timeout": 10,
            }
        }
    )
    row = daemon.wait_state("app", "RUNNING")
    assert row["status_text"] == "as nobody"
    assert psutil.Process(row["pid"]).uids().real == pwd.getpwnam("nobody").pw_uid


def test_update_releases_the_port_of_a_removed_program(daemon: Daemon) -> None:
    port = free_port()
    control = daemon.path("behaviour")
    web = serve_program(daemon, port, "--behaviour", control)
    daemon.up({"web": web, "other": {"command": child("run")}})
    daemon.wait_state("web", "RUNNING")
    daemon.write_config({"other": {"command": child("run")}})
    r = daemon.cli("update")
    assert r.rc == 0, r
    # the daemon no longer holds the port: anyone may bind it now
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", port))
    assert "released listening socket" in daemon_log(daemon)


def test_up_with_a_port_taken_reports_it_and_only_that_program_fails(daemon: Daemon) -> None:
    """The port's program is FATAL with the reason; the daemon stays up (issue 11, item 3:
    one busy port no longer stops every program)."""
    port = free_port()
    with socket.socket() as foreign:
        foreign.bind(("127.0.0.1", port))
        foreign.listen()
        daemon.write_config(
            {"web": {"command": child("run"), "listen_addrs": [f"127.0.0.1:{port}"]}}
        )
        r = daemon.cli("up")
        assert r.rc == 1, r
        assert f"listen_addrs '127.0.0.1:{port}'" in r.err and "in use" in r.err
        row = daemon.status()["web"]
        assert row["state"] == "FATAL" and "in use" in row["error"], row
