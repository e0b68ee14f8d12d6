"""install-timer / uninstall-timer (cron and systemd) and install-service.

Crontab changes run against a fake `crontab` on PATH: a tiny shell script keeping the table in
a file, so the real `crontab -l` / `crontab -` round trip is exercised. Generated units are
checked by `systemd-analyze verify` where it is installed.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from twinvisor.cli import integrate

FAKE_CRONTAB = """#!/bin/sh
# a stand-in for crontab(1): the table lives in $CRONTAB_FILE
case "$1" in
  -l) if [ -f "$CRONTAB_FILE" ]; then cat "$CRONTAB_FILE"; else
        echo "no crontab for $(id -un)" >&2; exit 1; fi ;;
  -) cat > "$CRONTAB_FILE" ;;
  -r) rm -f "$CRONTAB_FILE" ;;
  *) echo "usage: crontab [-l|-r|-]" >&2; exit 2 ;;
esac
"""

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


@pytest.fixture
def config(tmp_path: Path) -> str:
    path = tmp_path / "my conf" / "tv.toml"  # a space in the path: quoting is exercised
    path.parent.mkdir()
    path.write_text(f'[daemon]\nrun_dir = "{tmp_path}/run"\n[program.a]\ncommand = "sleep 100"\n')
    return str(path)


@pytest.fixture
def env(tmp_path: Path) -> dict[str, str]:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    fake = bin_dir / "crontab"
    fake.write_text(FAKE_CRONTAB)
    fake.chmod(0o755)
    return dict(
        os.environ,
        PATH=f"{bin_dir}:{os.environ['PATH']}",
        CRONTAB_FILE=str(tmp_path / "table"),
        XDG_CONFIG_HOME=str(tmp_path / "xdg"),
    )


def tv(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twinvisor", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )


def test_cron_print(config: str, env: dict[str, str]) -> None:
    r = tv(env, "-c", config, "install-timer", "--cron", "--print")
    assert r.returncode == 0, r
    line = r.stdout.splitlines()[-1]
    assert line.startswith("* * * * * /")
    assert f"-c '{config}' up --quiet >/dev/null 2>&1 # twinvisor:{config}" in line
    assert not os.path.exists(env["CRONTAB_FILE"])  # --print changes nothing


def test_systemd_timer_print(config: str, env: dict[str, str]) -> None:
    r = tv(env, "-c", config, "install-timer", "--systemd", "--print")
    assert r.returncode == 0, r
    out = r.stdout
    assert "OnUnitActiveSec=1min" in out and "Type=oneshot" in out
    assert f'-c "{config}" up --quiet' in out  # the space makes systemd quoting necessary
    assert "enable --now twinvisor-" in out


def test_cron_install_is_idempotent(config: str, env: dict[str, str], tmp_path: Path) -> None:
    table = Path(env["CRONTAB_FILE"])
    table.write_text("0 3 * * * /usr/local/bin/backup\n")
    r = tv(env, "-c", config, "install-timer", "--cron")
    assert r.returncode == 0, r
    assert "installed crontab line" in r.stdout
    r = tv(env, "-c", config, "install-timer", "--cron")
    assert r.returncode == 0 and "already installed" in r.stdout, r
    lines = table.read_text().splitlines()
    assert lines[0] == "0 3 * * * /usr/local/bin/backup"
    assert len(lines) == 2 and lines[1].endswith(f"# twinvisor:{config}")

    # a second config gets its own line; the first stays
    other = tmp_path / "other.toml"
    other.write_text(Path(config).read_text())
    assert tv(env, "-c", str(other), "install-timer", "--cron").returncode == 0
    assert len(table.read_text().splitlines()) == 3

    r = tv(env, "-c", config, "uninstall-timer", "--cron")
    assert r.returncode == 0 and "removed 1 crontab line" in r.stdout, r
    r = tv(env, "-c", config, "uninstall-timer", "--cron")
    assert r.returncode == 0 and "nothing was installed" in r.stdout, r
    lines = table.read_text().splitlines()
    assert lines[0] == "0 3 * * * /usr/local/bin/backup" and len(lines) == 2
    assert lines[1].endswith(f"# twinvisor:{other}")


def test_cron_line_runs_up(config: str, env: dict[str, str], tmp_path: Path) -> None:
    """The installed line, run by a shell as cron would, starts the daemon; run again, it
    starts nothing."""
    tv(env, "-c", config, "install-timer", "--cron")
    line = Path(env["CRONTAB_FILE"]).read_text().splitlines()[-1]
    command = line.split(" ", 5)[5].replace("\\%", "%")
    try:
        for _ in range(2):
            subprocess.run(["/bin/sh", "-c", command], env=env, check=True, timeout=60)
            r = tv(env, "-c", config, "status")
            assert r.returncode == 0 and "RUNNING" in r.stdout, r
    finally:
        tv(env, "-c", config, "down")


def test_no_crontab_command(config: str, env: dict[str, str]) -> None:
    env = dict(env, PATH="/nonexistent")
    r = subprocess.run(
        [sys.executable, "-m", "twinvisor", "-c", config, "install-timer", "--cron"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert r.returncode == 1 and "no `crontab` command" in r.stderr


def test_install_service_print(config: str, env: dict[str, str]) -> None:
    r = tv(env, "-c", config, "install-service", "--user", "--print")
    assert r.returncode == 0, r
    assert "Type=notify" in r.stdout and "KillMode=mixed" in r.stdout
    assert "Restart=on-failure" in r.stdout
    assert f'-c "{config}" up --foreground' in r.stdout
    assert os.path.join(env["XDG_CONFIG_HOME"], "systemd", "user") in r.stdout


@pytest.mark.skipif(integrate.systemd_running(), reason="would talk to the real systemd")
def test_install_service_user_without_systemd(config: str, env: dict[str, str]) -> None:
    r = tv(env, "-c", config, "install-service", "--user")
    assert r.returncode == 0, r
    assert "systemd does not run here" in r.stdout
    units = list(Path(env["XDG_CONFIG_HOME"], "systemd", "user").glob("twinvisor-*.service"))
    assert len(units) == 1 and "up --foreground" in units[0].read_text()


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="no systemd-analyze")
def test_units_pass_systemd_analyze_verify(config: str, tmp_path: Path) -> None:
    twinvisor = integrate.twinvisor_command()
    out = tmp_path / "units"
    out.mkdir()
    plans = [
        integrate.timer_plan("systemd", config, twinvisor),
        integrate.service_plan(config, twinvisor, user=False),
    ]
    names = []
    for plan in plans:
        for path, text in plan.files:
            target = out / os.path.basename(path)
            target.write_text(text)
            names.append(str(target))
    r = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", "--man=no", *names],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=out,
    )
    assert r.returncode == 0, r.stderr
    assert "twinvisor" not in r.stderr, r.stderr  # no warning names our units
