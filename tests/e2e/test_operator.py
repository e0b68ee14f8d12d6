"""What a new operator meets first (issue 11): run dirs per config, messages, exit codes."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
    toml_value,
)


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
