"""`twinvisor import` on a docker-style supervisord.conf: environment read at load time,
numprocs with process_name and %(process_num) ports, /dev/stdout logs, quoted environment,
groups, an eventlistener, an include. The result passes check-config and runs, every instance
with its own argument and port."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from functools import partial
from pathlib import Path

import pytest

from tests.support.helpers import Daemon, daemon_fixture, wait_until  # noqa: F401
from tests.support.parity import ask, free_prefix, has_text, status_names, write_server
from twinvisor.cli.importers import import_file
from twinvisor.config.load import load_config

DOCKER_CONF = """\
; the supervisord.conf of a typical container image
[supervisord]
nodaemon=true
logfile=/dev/null
logfile_maxbytes=0
pidfile=/tmp/supervisord.pid
environment=APP_ENV="%(ENV_APP_ENV)s",LANG="C.UTF-8"

[unix_http_server]
file=/tmp/supervisor.sock
chmod=0700

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///tmp/supervisor.sock

[program:web]
command={py} %(ENV_APP_DIR)s/server.py
  --port %(ENV_PORT_PREFIX)s%(process_num)02d --name %(program_name)s-%(process_num)d
process_name=%(program_name)s_%(process_num)02d
numprocs=%(ENV_WEB_WORKERS)s
directory=%(ENV_APP_DIR)s
environment=GREETING="hello, world; 100%% ${{not-mine}}",INSTANCE="%(process_num)d",
  DATA='%(here)s/data'
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
redirect_stderr=true
autorestart=true
startsecs=1
stopasgroup=true
killasgroup=true
priority=20

[program:worker]
command=/bin/sh -c "echo worker %(process_num)d of %(numprocs)d; exec sleep 600"
process_name=worker-%(process_num)d
numprocs=2
numprocs_start=1
stdout_logfile=%(here)s/logs/%(program_name)s-%(process_num)d.log
stderr_logfile=/dev/stderr
stderr_logfile_maxbytes=0
umask=027
priority=10

[group:app]
programs=web,worker
priority=5

[eventlistener:crashmail]
command=crashmail -a -m ops@example.com
events=PROCESS_STATE_EXITED

[include]
files = conf.d/*.conf
"""

INCLUDED = """\
[program:scheduler]
command=/bin/sh -c 'echo "tick from $APP_ENV"; exec sleep 600'
stdout_logfile=/dev/stdout
stdout_logfile_maxbytes=0
stderr_logfile=/dev/stderr
stderr_logfile_maxbytes=0
"""


def write_tree(root: Path, app_dir: str) -> Path:
    (root / "conf.d").mkdir(parents=True)
    (root / "logs").mkdir()
    (root / "conf.d" / "cron.conf").write_text(INCLUDED)
    conf = root / "supervisord.conf"
    conf.write_text(DOCKER_CONF.format(py=sys.executable))
    return conf


def test_docker_style_supervisord_conf(daemon: Daemon, monkeypatch: pytest.MonkeyPatch) -> None:
    app = Path(daemon.root, "app")
    app.mkdir()
    write_server(str(app))
    prefix = free_prefix(3)  # ports prefix*100 + 0..2: "%(ENV_PORT_PREFIX)s%(process_num)02d"
    env = {"APP_DIR": str(app), "PORT_PREFIX": str(prefix), "WEB_WORKERS": "3"}
    env["APP_ENV"] = "production"
    daemon.env.update(env)
    for key, value in env.items():
        monkeypatch.setenv(key, value)  # for load_config in this process
    conf = write_tree(Path(daemon.root, "src"), str(app))

    out = Path(daemon.root, "imported.toml")
    imp = subprocess.run(
        [sys.executable, "-m", "twinvisor", "import", str(conf), "-o", str(out)],
        env=daemon.env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert imp.returncode == 0, imp
    text = out.read_text()
    data = tomllib.loads(text)
    web = data["program"]["web"]
    # the environment is read when the config is loaded, not baked in at import
    assert web["command"][1:5] == [
        "${APP_DIR}/server.py",
        "--port",
        "${PORT_PREFIX}{instance:02}",
        "--name",
    ]
    assert web["numprocs"] == "${WEB_WORKERS}" and web["instance_name"] == "{program}_{instance:02}"
    assert web["environment"]["GREETING"] == "hello, world; 100% $${not-mine}"
    assert web["stdout_file"] == "/dev/stdout" and web["redirect_stderr"] is True
    assert data["group"] == {"app": {"programs": ["web", "worker"]}}
    assert data["program"]["worker"]["umask"] == "027"
    # what is left is what has no meaning here, and the listener (hooks come with events)
    dropped = imp.stdout.split("not carried over:")[1]
    notes = [line.strip() for line in dropped.splitlines() if line.strip().startswith("[")]
    assert [n.split("]")[0] + "]" for n in notes] == [
        "[supervisord]",
        "[unix_http_server]",
        "[rpcinterface:supervisor]",
        "[supervisorctl]",
        "[eventlistener:crashmail]",
    ], notes
    assert "now [hooks.crashmail]" in notes[-1] and "wrapper" in notes[-1]
    # the event listener is a hook on the same events
    assert data["hooks"] == {
        "crashmail": {"command": ["crashmail", "-a", "-m", "ops@example.com"], "on": ["exit"]}
    }

    daemon.write_raw(text + f'\n[daemon]\nrun_dir = "{daemon.run_dir}"\n')
    r = daemon.cli("--json", "check-config")
    assert r.rc == 0, r
    resolved = {p["name"]: p for p in json.loads(r.out)["programs"]}
    assert list(resolved) == ["web_00", "web_01", "web_02", "worker-1", "worker-2", "scheduler"]
    config = load_config(daemon.config)
    assert [(h.name, h.on) for h in config.hooks] == [("crashmail", ("exit",))]
    by = config.by_name()
    assert by["web_00"].priority == 20 and by["worker-1"].priority == 10
    assert by["scheduler"].priority == 999 and by["scheduler"].stderr.console == "stderr"
    assert dict(by["scheduler"].environment) == {"APP_ENV": "production", "LANG": "C.UTF-8"}

    r = daemon.cli("up")
    assert r.rc == 0, r
    for i in range(3):
        got = ask(prefix * 100 + i)
        assert got["argv"] == ["--port", f"{prefix}{i:02}", "--name", f"web-{i}"]
        assert got["cwd"] == str(app)
        assert got["env"] == {
            "TWINVISOR_PROGRAM": f"web_{i:02}",
            "INSTANCE": str(i),
            "GREETING": "hello, world; 100% ${not-mine}",
            "APP_ENV": "production",
            "DATA": str(conf.parent / "data"),
        }
    for n in (1, 2):
        log = conf.parent / "logs" / f"worker-{n}.log"
        wait_until(partial(has_text, log, f"worker {n} of 2"), what="the worker's log")
        assert log.stat().st_mode & 0o777 == 0o640  # umask=027
    # /dev/stdout is the daemon's own stdout: twinvisor.out for `up` in the background
    console = Path(daemon.log_dir, "twinvisor.out")
    lines = [f"listening on {prefix}{i:02}" for i in range(3)] + ["tick from production"]
    wait_until(lambda: all(line in console.read_text() for line in lines), what="console lines")
    # the group works in verbs and status
    r = daemon.cli("restart", "app:*")
    assert r.rc == 0, r
    assert len(r.out.splitlines()) == 5
    names = status_names(daemon.cli("status").out)
    assert names == [
        "app:web_00",
        "app:web_01",
        "app:web_02",
        "app:worker-1",
        "app:worker-2",
        "scheduler",
    ]
    assert ask(prefix * 100 + 2)["env"]["INSTANCE"] == "2"  # back, on its own port


def test_import_escapes_and_translations(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    conf = tmp_path / "s.conf"
    conf.write_text(
        "[program:a]\n"
        "command=/bin/sh -c 'echo ${HOME} {name} {1..3} $$'\n"
        "numprocs=2\n"
        "process_name=a%(process_num)s\n"
        "autostart=%(ENV_A_AUTOSTART)s\n"
        "startsecs=%(ENV_A_STARTSECS)s\n"
        "[group:a]\nprograms=a\n"
    )
    result = import_file(str(conf))
    data = tomllib.loads(result.toml)
    a = data["program"]["a"]
    # literal ${ and placeholders are escaped: the command runs as supervisord ran it
    assert a["command"] == ["/bin/sh", "-c", "echo $${HOME} {{name}} {1..3} $$"]
    assert a["autostart"] == "${A_AUTOSTART}" and a["min_uptime"] == "${A_STARTSECS}"
    assert data["group"] == {"a-group": {"programs": ["a"]}}
    assert any("renamed to 'a-group'" in d for d in result.dropped)
    config_path = tmp_path / "t.toml"
    config_path.write_text(result.toml)
    monkeypatch.setenv("A_AUTOSTART", "false")
    monkeypatch.setenv("A_STARTSECS", "2.5")
    specs = load_config(str(config_path)).programs
    assert [s.name for s in specs] == ["a0", "a1"]
    assert specs[0].command[-1] == "echo ${HOME} {name} {1..3} $$"
    assert specs[0].autostart is False and specs[0].restart.min_uptime == 2.5
