"""`twinvisor import` (supervisord.conf, Procfile) and `twinvisor export systemd`.

Imported configs are checked three ways: tomllib parses them, load_config accepts them, and a
daemon started on one runs the program.
"""

from __future__ import annotations

import os
import pwd
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import psutil
import pytest
from helpers import CHILDREN, Daemon, daemon_fixture, gone  # noqa: F401

from twinvisor.cli.export_systemd import exec_line, export_units, quote_arg
from twinvisor.cli.importers import (
    ImportErrorText,
    import_file,
    parse_supervisor_env,
    toml_string,
)
from twinvisor.config.load import load_config
from twinvisor.config.specs import AutoRestart

PY = sys.executable
USER = pwd.getpwuid(os.geteuid()).pw_name
SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def imported(tmp_path: Path, source: Path) -> tuple[str, list[str]]:
    """Import `source` to tmp/tv.toml (with a [daemon] table added); load it; return it."""
    result = import_file(str(source))
    tomllib.loads(result.toml)
    out = tmp_path / "tv.toml"
    out.write_text(result.toml + f'\n[daemon]\nrun_dir = "{tmp_path}/run"\n')
    load_config(str(out))
    return str(out), result.dropped


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


@pytest.fixture
def supervisord(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    (src / "app").mkdir(parents=True)
    write(src / "conf.d" / "jobs.conf", SUPERVISORD_INCLUDED)
    write(src / "extra" / "one.ini", f"[program:extra]\ncommand={PY} {CHILDREN} run\n")
    return write(src / "supervisord.conf", SUPERVISORD_MAIN)


def test_supervisord_import(tmp_path: Path, supervisord: Path) -> None:
    path, dropped = imported(tmp_path, supervisord)
    config = load_config(path)
    by = config.by_name()
    here = str(supervisord.parent)
    assert list(by) == ["web", "worker:0", "worker:1", "cron-job", "extra"]

    web = by["web"]
    assert web.command == (PY, CHILDREN, "run", "--role", "web app")
    assert web.directory == f"{here}/app"
    assert web.restart.auto_restart is AutoRestart.ALWAYS
    assert web.restart.min_uptime == 0 and web.restart.max_retry == 5
    assert web.restart.exit_codes == (0, 2)
    assert web.stop_signal == "INT" and web.stop_timeout == 7 and web.user == USER
    assert dict(web.environment) == {
        "GREETING": "hello, world",
        "PATH": "/usr/bin:/bin",
        "EMPTY": "",
        "PLAIN": "x",
    }
    assert web.stdout.path == f"{here}/logs/web.out"
    assert web.stdout.max_bytes == 5 * 1024 * 1024 and web.stdout.backups == 3

    worker = by["worker:0"]
    assert worker.numprocs == 2
    assert worker.restart.auto_restart is AutoRestart.UNEXPECTED  # supervisord's default
    assert worker.stderr.path is None  # NONE: discarded

    job = by["cron-job"]
    assert job.command == ("/bin/sh", "-c", "echo 100% done; exec sleep 300")
    assert job.directory == f"{here}/conf.d"  # %(here)s of the included file
    assert job.restart.auto_restart is AutoRestart.NEVER
    assert by["extra"].restart.auto_restart is AutoRestart.UNEXPECTED

    text = "\n".join(dropped)
    for expected in (
        "[group:stack] (programs web,worker): groups are not carried over",
        "[program:web]: redirect_stderr = true",
        "[program:web]: start order by priority",
        "[supervisord]",
        "[unix_http_server]",
        "[program:cron-job]: stopasgroup",
    ):
        assert expected in text, (expected, text)


def test_supervisord_process_num_and_missing_include(tmp_path: Path) -> None:
    conf = write(
        tmp_path / "s.conf",
        "[program:q]\ncommand=sleep 1%(process_num)02d\nnumprocs=3\n"
        "process_name=q-%(process_num)s\n"
        "[program:bad name]\ncommand=sleep 1\n"
        "[program:nocommand]\ndirectory=/tmp\n"
        "[include]\nfiles=missing/*.conf\n",
    )
    path, dropped = imported(tmp_path, conf)
    by = load_config(path).by_name()
    assert by["q:0"].command == ("sleep", "100")
    assert "bad_name" in by
    text = "\n".join(dropped)
    assert "%(process_num) in command" in text
    assert "process_name 'q-%(process_num)s'" in text
    assert "renamed to 'bad_name'" in text
    assert "[program:nocommand]: no command" in text
    assert "missing/*.conf: no file matches" in text


def test_import_cli_writes_and_lists(tmp_path: Path, supervisord: Path) -> None:
    out = tmp_path / "out.toml"
    argv = [PY, "-m", "twinvisor", "import", str(supervisord), "-o", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    assert "wrote" in r.stdout and "not carried over:" in r.stdout
    assert "[group:stack]" in r.stdout
    tomllib.loads(out.read_text())
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "--force" in r.stderr
    r = subprocess.run(
        [PY, "-m", "twinvisor", "import", str(tmp_path / "nothing.conf")],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 2


def test_procfile_import(tmp_path: Path) -> None:
    app = tmp_path / "app"
    write(app / ".env", "DATABASE_URL=postgres://x\n")
    procfile = write(
        app / "Procfile",
        "# processes\n"
        f"web: {PY} -m http.server $PORT --bind 127.0.0.1\n"
        f"worker: {PY} {CHILDREN} run\n"
        "release: ./migrate && echo done\n",
    )
    path, dropped = imported(tmp_path, procfile)
    by = load_config(path).by_name()
    assert list(by) == ["web", "worker", "release"]
    assert by["worker"].command == (PY, CHILDREN, "run")
    assert by["worker"].directory == str(app)
    assert by["web"].command[:2] == ("/bin/sh", "-c")  # $PORT needs a shell
    assert dict(by["web"].environment)["PORT"] == "5000"
    assert dict(by["worker"].environment)["DATABASE_URL"] == "postgres://x"
    assert any("$PORT" in d for d in dropped)


def test_not_a_config(tmp_path: Path) -> None:
    with pytest.raises(ImportErrorText):
        import_file(str(write(tmp_path / "x.conf", "[broken\nkey")))
    with pytest.raises(ImportErrorText):
        import_file(str(write(tmp_path / "y.conf", "[supervisord]\nlogfile=x\n")))


@pytest.mark.parametrize(
    ("text", "env"),
    [
        ('A="1",B=2', {"A": "1", "B": "2"}),
        ("A=\"x, y\",B='q'", {"A": "x, y", "B": "q"}),
        ("A=/usr/bin:/bin, B = spaced", {"A": "/usr/bin:/bin", "B": "spaced"}),
        ('K=""', {"K": ""}),
    ],
)
def test_supervisor_environment(text: str, env: dict[str, str]) -> None:
    assert parse_supervisor_env(text) == env


def test_toml_strings_round_trip() -> None:
    for value in ['a"b', "back\\slash", "tab\tnl\nend", "\x01\x7f", "ünï", "%(x)s $HOME"]:
        assert tomllib.loads(f"v = {toml_string(value)}")["v"] == value


def test_imported_config_runs(daemon: Daemon, supervisord: Path) -> None:
    """A daemon on an imported supervisord config runs its programs."""
    result = import_file(str(supervisord))
    daemon.write_raw(result.toml + f'\n[daemon]\nrun_dir = "{daemon.run_dir}"\n')
    r = daemon.cli("up")
    assert r.rc == 0, r
    for name in ("web", "worker:0", "worker:1", "extra", "cron-job"):
        row = daemon.wait_state(name, "RUNNING", timeout=20)
        assert not gone(row["pid"])
    web = psutil.Process(daemon.pid("web"))
    assert web.cmdline()[-2:] == ["--role", "web app"]
    assert web.environ()["GREETING"] == "hello, world"
    assert web.cwd() == str(supervisord.parent / "app")


def test_imported_procfile_runs(daemon: Daemon) -> None:
    procfile = write(
        Path(daemon.root) / "app" / "Procfile", f"worker: {PY} {CHILDREN} run --role a\n"
    )
    result = import_file(str(procfile))
    daemon.write_raw(result.toml + f'\n[daemon]\nrun_dir = "{daemon.run_dir}"\n')
    assert daemon.cli("up").rc == 0
    row = daemon.wait_state("worker", "RUNNING", timeout=20)
    assert row["pid"]


# ---- export --------------------------------------------------------------------------------------


def test_quoting() -> None:
    assert quote_arg("plain/path-1.2") == "plain/path-1.2"
    assert quote_arg("a b") == '"a b"'
    assert quote_arg("100%") == "100%%"
    assert quote_arg("$HOME") == "$$HOME"
    assert quote_arg('say "hi"\\') == '"say \\"hi\\"\\\\"'
    assert quote_arg("") == '""'
    assert quote_arg(";") == "\\;"
    assert exec_line(["/bin/sh", "-c", "echo $X 50%"]) == '/bin/sh -c "echo $$X 50%%"'


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


def test_export_units(tmp_path: Path) -> None:
    path = write(tmp_path / "tv.toml", EXPORT_CONFIG)
    units, notes = export_units(load_config(str(path)))
    by = {u.name: u.text for u in units}
    assert sorted(by) == ["db.service", "web-0.service", "web-1.service", "web.socket"]
    db = by["db.service"]
    assert f'ExecStart={PY} {CHILDREN} run --role "100%% $$HOME \\"q\\""' in db
    assert f"WorkingDirectory={tmp_path}" in db
    assert 'Environment="GREETING=hello world" "PCT=50%%" "TWINVISOR_PROGRAM=db"' in db
    for line in (
        "Type=notify",
        "WatchdogSec=5s",
        "Restart=on-failure",
        "SuccessExitStatus=3",
        "RestartSec=0.5s",
        "StartLimitBurst=4",
        "TimeoutStopSec=7s",
        "KillSignal=SIGINT",
        "KillMode=control-group",
        "User=root",
        "Group=root",
        f"StandardOutput=append:{tmp_path}/logs/db.out",
        f"StandardError=append:{tmp_path}/run/log/db.stderr.log",
        "WantedBy=multi-user.target",
    ):
        assert line in db.splitlines(), line
    web = by["web-0.service"]
    assert 'ExecStart=/bin/sh -c "exec sleep 100"' in web
    assert "After=db.service web.socket" in web and "Requires=db.service web.socket" in web
    assert "Restart=no" in web and "StandardError=null" in web
    assert "Sockets=web.socket" in web and "[Install]" not in web  # autostart = false
    sock = by["web.socket"]
    for line in (
        "ListenStream=8080",
        "ListenStream=127.0.0.1:8081",
        "ListenStream=/tmp/tv-export-test.sock",
        "FileDescriptorName=web",
        "SocketMode=0660",
        "Service=web-0.service",
    ):
        assert line in sock.splitlines(), line
    assert any("log rotation" in n for n in notes)


@pytest.mark.skipif(SYSTEMD_ANALYZE is None, reason="no systemd-analyze")
def test_exported_units_verify(tmp_path: Path) -> None:
    path = write(tmp_path / "tv.toml", EXPORT_CONFIG)
    (tmp_path / "logs").mkdir()
    out = tmp_path / "units"
    r = subprocess.run(
        [PY, "-m", "twinvisor", "-c", str(path), "export", "systemd", str(out)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert r.returncode == 0, r
    assert "wrote" in r.stdout and "note:" in r.stderr
    files = sorted(str(p) for p in out.iterdir())
    assert len(files) == 4
    v = subprocess.run(
        [str(SYSTEMD_ANALYZE), "verify", "--man=no", *files],
        capture_output=True,
        text=True,
        timeout=120,
        cwd=out,
    )
    assert v.returncode == 0, v.stderr
    names = ("db.service", "web-0.service", "web-1.service", "web.socket")
    bad = [line for line in v.stderr.splitlines() if any(n in line for n in names)]
    assert not bad, v.stderr


def test_export_unknown_command(tmp_path: Path) -> None:
    path = write(tmp_path / "tv.toml", '[program.x]\ncommand = "no-such-program-here --flag"\n')
    units, notes = export_units(load_config(str(path)))
    assert "ExecStart=no-such-program-here --flag" in units[0].text
    assert any("not found here" in n for n in notes)
