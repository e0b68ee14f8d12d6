"""`twinvisor status --watch` driven in a real terminal (tmux): it draws the programs and shows
a program's restart (its new pid) as it happens, from the events stream; without a terminal it
prints lines."""

from __future__ import annotations

import os
import shlex
import signal
import subprocess
import time
from collections.abc import Iterator

import pytest

from tests.support.helpers import Daemon, child, daemon_fixture, wait_until  # noqa: F401


class Tmux:
    """A private tmux server (its own socket name) holding one session of 120x40."""

    def __init__(self, name: str) -> None:
        self.base = ["tmux", "-L", name]

    def start(self, command: str) -> None:
        subprocess.run(
            [*self.base, "new-session", "-d", "-s", "w", "-x", "120", "-y", "40", command],
            check=True,
        )

    def screen(self) -> str:
        r = subprocess.run(
            [*self.base, "capture-pane", "-p", "-t", "w"], capture_output=True, text=True
        )
        return r.stdout

    def close(self) -> None:
        subprocess.run([*self.base, "kill-server"], capture_output=True)


@pytest.fixture
def tmux() -> Iterator[Tmux]:
    t = Tmux(f"twinvisor-test-{os.getpid()}")
    try:
        yield t
    finally:
        t.close()


def test_status_watch_shows_a_restart_live(daemon: Daemon, tmux: Tmux) -> None:
    daemon.up({"app": {"command": child("run")}, "other": {"command": child("run")}})
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    daemon.wait_state("other", "RUNNING")
    env = " ".join(f"{k}={shlex.quote(v)}" for k, v in daemon.env.items() if k.isidentifier())
    argv = " ".join(shlex.quote(a) for a in [*daemon.cli_argv(), "status", "--watch"])
    tmux.start(f"env -i {env} TERM=xterm {argv}")
    screen = wait_until(
        lambda: tmux.screen() if str(pid) in tmux.screen() else None, 10, "the view"
    )
    assert "RUNNING" in screen and "other" in screen and "CPU%" in screen
    killed = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    new = daemon.wait_state("app", "RUNNING", where=lambda r: r["pid"] != pid)["pid"]
    # the bound: the restart is on screen within 1 s of the kill (the view follows the
    # events stream; typically ~0.1 s here, most of it tmux and capture-pane themselves)
    after = wait_until(
        lambda: tmux.screen() if str(new) in tmux.screen() else None, 1, "the new pid drawn"
    )
    drawn = time.monotonic() - killed
    assert drawn < 1.0, f"the restart took {drawn:.2f} s to be drawn"
    assert "exit" in after and "restarting (exit)" in after  # the last events, below


def test_status_watch_without_a_terminal_prints_lines(daemon: Daemon) -> None:
    daemon.up({"app": {"command": child("run")}})
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    watch = subprocess.Popen(
        [*daemon.cli_argv(), "status", "--watch"],
        env=daemon.env,
        stdout=subprocess.PIPE,
        stdin=subprocess.DEVNULL,
        text=True,
    )
    try:
        assert watch.stdout is not None
        lines = [watch.stdout.readline() for _ in range(2)]
        assert lines[1].startswith("NAME"), lines
        os.kill(pid, signal.SIGKILL)
        while "restarting (exit)" not in (line := watch.stdout.readline()):
            assert line, "the watch ended"
    finally:
        watch.send_signal(signal.SIGINT)
        watch.wait(10)
