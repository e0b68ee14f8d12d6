"""Configs in other formats for the import/export tests: a supervisord.conf tree, a config to
export as systemd units."""

from __future__ import annotations

import os
import pwd
import sys
from pathlib import Path

import pytest

from tests.support.paths import CHILDREN

PY = sys.executable
USER = pwd.getpwuid(os.geteuid()).pw_name


SUPERVISORD_MAIN = f"""
; a typical supervisord.conf
[unix_http_server]
file=/tmp/supervisor.sock   ; the path to the socket file

[supervisord]
logfile=%(here)s/supervisord.log
nodaemon=false

[rpcinterface:supervisor]
supervisor.rpcinterface_factory = supervisor.rpcinterface:make_main_rpcinterface

[supervisorctl]
serverurl=unix:///tmp/supervisor.sock

[program:web]
command={PY} {CHILDREN} run --role "web app"   ; inline comment
directory=%(here)s/app
autostart=true
autorestart=true
startsecs=0
startretries=5
exitcodes=0,2
stopsignal=INT
stopwaitsecs=7
user={USER}
environment=GREETING="hello, world",PATH="/usr/bin:/bin",EMPTY="",PLAIN=x
stdout_logfile=%(here)s/logs/web.out
stdout_logfile_maxbytes=5MB
stdout_logfile_backups=3
redirect_stderr=true
priority=10

[program:worker]
command={PY} {CHILDREN} run
process_name=%(program_name)s_%(process_num)02d
numprocs=2
autorestart=unexpected
stderr_logfile=NONE
stdout_logfile=AUTO

[group:stack]
programs=web,worker
priority=999

[include]
files = conf.d/*.conf extra/one.ini
"""

SUPERVISORD_INCLUDED = """
[program:cron-job]
command = /bin/sh -c "echo 100%% done; exec sleep 300"
directory = %(here)s
autorestart = false
stopasgroup = true
"""


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


@pytest.fixture(name="supervisord")
def supervisord_fixture(tmp_path: Path) -> Path:
    """A supervisord.conf with an include glob, an explicit include and an app directory."""
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    write(src / "conf.d" / "jobs.conf", SUPERVISORD_INCLUDED)
    write(src / "extra" / "one.ini", f"[program:extra]\ncommand={PY} {CHILDREN} run\n")
    return write(src / "supervisord.conf", SUPERVISORD_MAIN)


EXPORT_CONFIG = f"""
[daemon]
run_dir = "run"

[program.db]
command = ["{PY}", "{CHILDREN}", "run", "--role", "100% $HOME \\"q\\""]
directory = "."
environment = {{ GREETING = "hello world", PCT = "50%" }}
ready = "notify"
watchdog_sec = 5
auto_restart = "unexpected"
exit_codes = [0, 3]
stop_signal = "INT"
stop_timeout = 7
max_retry = 4
backoff_initial = 0.5
user = "root"
group = "root"
stdout_file = "logs/db.out"

[program.web]
command = "/bin/sh -c 'exec sleep 100'"
listen_addrs = [":8080", "127.0.0.1:8081", "unix:/tmp/tv-export-test.sock"]
socket_mode = "0660"
numprocs = 2
depends_on = ["db"]
auto_restart = false
autostart = false
stderr_file = ""
"""
