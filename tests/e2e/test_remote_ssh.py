"""`twinvisor -H ssh://…` and `--hosts FILE` through a real OpenSSH server on loopback.

The "remote" hosts are this machine seen through sshd: each host entry runs the test's
own interpreter (`--remote-command`), each with its own config, so two entries are two
daemons. The failures are real ones: a port nobody listens on, a key sshd refuses, a
command the host does not have, a config whose daemon is not running.
"""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.helpers import (  # noqa: F401
    Daemon,
    Result,
    child,
    daemon_fixture,
    free_port,
    wait_until,
)
from tests.support.sshd import Sshd, sshd_fixture  # noqa: F401

REMOTE = f"{shlex.quote(sys.executable)} -m twinvisor"


def remote_cli(daemon: Daemon, *args: str, env: dict[str, str] | None = None) -> Result:
    """The local CLI (without -c: the config is the remote side's, forwarded after -c)."""
    p = subprocess.run(
        [sys.executable, "-m", "twinvisor", *args],
        env={**daemon.env, **(env or {})},
        capture_output=True,
        text=True,
        timeout=60,
        stdin=subprocess.DEVNULL,
    )
    return Result(p.returncode, p.stdout, p.stderr)


def over(sshd: Sshd, host: str | None = None) -> list[str]:
    return ["-H", host or sshd.url, "--ssh", sshd.ssh, "--remote-command", REMOTE]


def flood(daemon: Daemon) -> dict[str, object]:
    return {"command": child("flood", 3)}


@pytest.fixture(name="second")
def second_daemon() -> Iterator[Daemon]:
    d = Daemon(tempfile.mkdtemp(prefix="tv", dir="/tmp"))
    try:
        yield d
    finally:
        d.teardown()


def test_up_status_restart_logs_over_ssh_url(daemon: Daemon, sshd: Sshd) -> None:
    daemon.write_config({"web": flood(daemon), "idle": {"command": child("run")}})
    r = remote_cli(daemon, *over(sshd), "-c", daemon.config, "up")
    assert r.rc == 0, r  # returns: the daemon keeps none of the ssh session's pipes
    assert "supervisor pid:" in r.out
    first = daemon.wait_state("web", "RUNNING")["pid"]
    daemon.wait_state("idle", "RUNNING")

    r = remote_cli(daemon, *over(sshd), "-c", daemon.config, "status")
    assert r.rc == 0, r
    assert any(line.startswith("NAME") for line in r.out.splitlines()), r.out  # the host's table
    assert "web" in r.out and "RUNNING" in r.out and str(first) in r.out

    r = remote_cli(daemon, *over(sshd), "-c", daemon.config, "--json", "status", "web")
    assert r.rc == 0, r
    assert [(row["name"], row["pid"]) for row in json.loads(r.out)] == [("web", first)]

    r = remote_cli(daemon, *over(sshd), "-c", daemon.config, "restart", "web")
    assert r.rc == 0, r
    again = daemon.wait_state("web", "RUNNING")["pid"]
    assert again != first
    assert f"web: restarted (pid {again})" in r.out

    r = remote_cli(daemon, *over(sshd), "-c", daemon.config, "logs", "web", "-n", "2")
    assert r.rc == 0, r
    assert r.out.splitlines() == ["line 00000001", "line 00000002"]


def test_environment_names_host_ssh_and_remote_command_and_a_jump_host(
    daemon: Daemon, sshd: Sshd
) -> None:
    daemon.up({"idle": {"command": child("run")}})
    pid = daemon.wait_state("idle", "RUNNING")["pid"]
    env = {
        "TWINVISOR_HOST": "tv-good",  # an ssh_config alias, as written
        "TWINVISOR_SSH": sshd.ssh,
        "TWINVISOR_REMOTE_COMMAND": f"{REMOTE} -c {shlex.quote(daemon.config)}",
    }
    r = remote_cli(daemon, "--json", "status", env=env)
    assert r.rc == 0, r
    assert json.loads(r.out)[0]["pid"] == pid
    # a jump host is OpenSSH's business: -J through the same server to itself
    env["TWINVISOR_SSH"] = f"{sshd.ssh} -J tv-good"
    logins = sshd.log().count("Accepted publickey")
    r = remote_cli(daemon, "-H", sshd.url, "--json", "status", env=env)
    assert r.rc == 0, r
    assert json.loads(r.out)[0]["pid"] == pid
    assert sshd.log().count("Accepted publickey") == logins + 2  # the jump, then the host


def test_single_host_failures_say_which_host_and_why(daemon: Daemon, sshd: Sshd) -> None:
    daemon.write_config({"idle": {"command": child("run")}})  # no daemon runs it
    r = remote_cli(daemon, *over(sshd), "-c", daemon.config, "status")
    assert r.rc == 3, r
    assert f"twinvisor: {sshd.url.removeprefix('ssh://')}: no daemon running" in r.err
    assert "no twinvisor daemon is answering" in r.err  # the host's own words, passed on

    closed = f"ssh://127.0.0.1:{free_port()}"
    r = remote_cli(daemon, *over(sshd, closed), "status")
    assert r.rc == 1, r
    assert "127.0.0.1:" in r.err and "unreachable (connection refused)" in r.err

    r = remote_cli(daemon, *over(sshd, "tv-badkey"), "status")
    assert r.rc == 1, r
    assert "twinvisor: tv-badkey: permission denied (ssh authentication)" in r.err

    r = remote_cli(daemon, "-H", "tv-good", "--ssh", sshd.ssh, "--remote-command", "no-such-tv")
    assert r.rc == 2  # no verb: the local parser says so before any ssh
    r = remote_cli(
        daemon, "-H", "tv-good", "--ssh", sshd.ssh, "--remote-command", "no-such-tv", "status"
    )
    assert r.rc == 1, r
    assert "'no-such-tv' not found on the host" in r.err


def test_bad_host_is_a_usage_error_before_any_ssh(daemon: Daemon) -> None:
    for bad in ("-oProxyCommand=touch /tmp/x", "http://h", "ssh://h:99999", "ssh://a b"):
        r = remote_cli(daemon, "-H", bad, "--ssh", "false", "status")
        assert r.rc == 2, (bad, r)
        assert "twinvisor:" in r.err


def hosts_file(daemon: Daemon, sshd: Sshd, *lines: str) -> str:
    path = daemon.path("hosts")
    Path(path).write_text("# the fleet\n" + "\n".join(lines) + "\n")
    return path


def test_hosts_two_daemons_then_one_down(daemon: Daemon, second: Daemon, sshd: Sshd) -> None:
    for d in (daemon, second):
        d.up({"web": {"command": child("run")}})
    pids = {d.root: d.wait_state("web", "RUNNING")["pid"] for d in (daemon, second)}
    hosts = hosts_file(
        daemon,
        sshd,
        f"{sshd.url}  {REMOTE} -c {daemon.config}",
        f"tv-good  {REMOTE} -c {second.config}   # the same machine, another daemon",
    )
    fleet = ["--hosts", hosts, "--ssh", sshd.ssh]

    r = remote_cli(daemon, *fleet, "restart", "web")
    assert r.rc == 0, r
    for d in (daemon, second):
        assert d.wait_state("web", "RUNNING")["pid"] != pids[d.root]
    name = sshd.url.removeprefix("ssh://")
    assert {line.split()[0] for line in r.out.splitlines()} == {name, "tv-good"}
    assert r.out.count("web: restarted") == 2

    r = remote_cli(daemon, *fleet, "status")
    assert r.rc == 0, r
    lines = r.out.splitlines()
    assert lines[0].split()[:3] == ["HOST", "NAME", "STATE"]
    assert [line.split()[:3] for line in lines[1:]] == [
        [name, "web", "RUNNING"],
        ["tv-good", "web", "RUNNING"],
    ]

    assert remote_cli(daemon, "-H", "tv-good", "--ssh", sshd.ssh, "--remote-command",
                      f"{REMOTE} -c {second.config}", "down").rc == 0  # fmt: skip
    r = remote_cli(daemon, *fleet, "status")
    assert r.rc == 3, r  # the one failed host's code: no daemon
    assert [line.split()[:2] for line in r.out.splitlines()] == [["HOST", "NAME"], [name, "web"]]
    assert "twinvisor: tv-good: no daemon running" in r.err
    assert "1 of 2 hosts failed: tv-good (no daemon running)" in r.err


def test_hosts_unreachable_and_refused_json(daemon: Daemon, sshd: Sshd) -> None:
    daemon.up({"web": {"command": child("run")}})
    pid = daemon.wait_state("web", "RUNNING")["pid"]
    hosts = hosts_file(
        daemon,
        sshd,
        f"{sshd.url}  {REMOTE} -c {daemon.config}",
        f"ssh://127.0.0.1:{free_port()}",
        "tv-badkey",
    )
    r = remote_cli(daemon, "--hosts", hosts, "--ssh", sshd.ssh, "--json", "status")
    assert r.rc == 1, r
    doc = json.loads(r.out)
    assert doc["ok"] is False
    good, down, refused = doc["hosts"]
    assert good["ok"] and good["exit"] == 0 and good["result"][0]["pid"] == pid
    assert (down["ok"], down["exit"]) == (False, 1)
    assert down["reason"] == "unreachable (connection refused)"
    assert "Connection refused" in down["error"]
    assert refused["reason"] == "permission denied (ssh authentication)"
    assert "2 of 3 hosts failed" in r.err


def test_hosts_logs_follow_prefixed_then_interrupted(
    daemon: Daemon, second: Daemon, sshd: Sshd
) -> None:
    """`logs -f` on two hosts at once: each line as `HOST  line`; Ctrl-C ends the command, its
    ssh clients and (their pipes closed by sshd) the `logs -f` on each host."""
    for d in (daemon, second):
        d.up({"web": flood(d)})
        d.wait_state("web", "RUNNING")
    hosts = hosts_file(
        daemon,
        sshd,
        f"{sshd.url}  {REMOTE} -c {daemon.config}",
        f"tv-good  {REMOTE} -c {second.config}",
    )
    argv = ["--hosts", hosts, "--ssh", sshd.ssh, "logs", "web", "-f", "-n", "1"]
    lines = follow_then_interrupt(daemon, argv, 2)
    assert {line.split()[0] for line in lines} == {sshd.url.removeprefix("ssh://"), "tv-good"}
    wait_until(lambda: not followers(daemon, second), timeout=10, what="no logs -f left")


def test_one_host_logs_follow_interrupted(daemon: Daemon, sshd: Sshd) -> None:
    daemon.up({"web": flood(daemon)})
    daemon.wait_state("web", "RUNNING")
    lines = follow_then_interrupt(
        daemon, [*over(sshd), "-c", daemon.config, "logs", "web", "-f"], 3
    )
    assert lines == ["line 00000000", "line 00000001", "line 00000002"]  # as on the host
    wait_until(lambda: not followers(daemon), timeout=10, what="no logs -f left")


def follow_then_interrupt(daemon: Daemon, args: list[str], count: int) -> list[str]:
    """Start a following CLI, read `count` lines, SIGINT it (only it: a `kill -INT`, not the
    terminal's Ctrl-C that ssh would get too); it must end with 0, as `logs -f` does."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "twinvisor", *args],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        lines = [proc.stdout.readline().decode().rstrip("\n") for _ in range(count)]
        proc.send_signal(signal.SIGINT)
        assert proc.wait(timeout=30) == 0, proc.stderr.read()
    finally:
        if proc.poll() is None:  # a hang is the failure: report it, leak nothing
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    return lines


def followers(*daemons: Daemon) -> list[psutil.Process]:
    """`twinvisor … logs web -f` processes running for these daemons' configs."""
    found = []
    for p in psutil.process_iter(["cmdline"]):
        line = " ".join(p.info["cmdline"] or ())
        if " logs web -f" in line and any(d.config in line for d in daemons):
            found.append(p)
    return found
