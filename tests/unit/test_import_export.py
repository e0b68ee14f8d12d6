"""The importers (supervisord.conf, Procfile) and the systemd exporter, as functions.

Imported configs are checked two ways here: tomllib parses them and load_config accepts them;
e2e/test_import_export.py runs a daemon on them and verifies exported units.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

from tests.support.importdata import (
    EXPORT_CONFIG,
    PY,
    USER,
    supervisord_fixture,  # noqa: F401
    write,
)
from tests.support.paths import CHILDREN
from twinvisor.cli.export_systemd import exec_line, export_units, quote_arg
from twinvisor.cli.importers import (
    ImportErrorText,
    import_file,
    parse_supervisor_env,
    toml_string,
)
from twinvisor.config.load import load_config
from twinvisor.config.specs import AutoRestart


def imported(tmp_path: Path, source: Path) -> tuple[str, list[str]]:
    """Import `source` to tmp/tv.toml (with a [daemon] table added); load it; return it."""
    result = import_file(str(source))
    tomllib.loads(result.toml)
    out = tmp_path / "tv.toml"
    out.write_text(result.toml + f'\n[daemon]\nrun_dir = "{tmp_path}/run"\n')
    load_config(str(out))
    return str(out), result.dropped


def test_supervisord_import(tmp_path: Path, supervisord: Path) -> None:
    path, dropped = imported(tmp_path, supervisord)
    config = load_config(path)
    by = config.by_name()
    here = str(supervisord.parent)
    assert list(by) == ["web", "worker_00", "worker_01", "cron-job", "extra"]

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

    worker = by["worker_00"]
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
        "[supervisord] logfile, nodaemon: nodaemon, logfile",
        "[unix_http_server]: no meaning here",
        "[rpcinterface:supervisor]: no meaning here",
        "[supervisorctl]: no meaning here",
    ):
        assert expected in text, (expected, text)
    # what used to be dropped is carried over now
    assert web.redirect_stderr and web.priority == 10 and web.stderr.path is None
    assert [(g.name, g.programs) for g in config.groups] == [("stack", ("web", "worker"))]
    assert by["worker_00"].priority == 999  # the group's priority=999 is the default anyway
    assert "stopasgroup" not in text and "redirect_stderr" not in text and "priority" not in text


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
    assert [by[f"q-{i}"].command for i in range(3)] == [("sleep", f"1{i:02}") for i in range(3)]
    assert "bad_name" in by
    text = "\n".join(dropped)
    assert "process_num" not in text and "process_name" not in text
    assert "renamed to 'bad_name'" in text
    assert "[program:nocommand]: no command" in text
    assert "missing/*.conf: no file matches" in text


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


def test_export_unknown_command(tmp_path: Path) -> None:
    path = write(tmp_path / "tv.toml", '[program.x]\ncommand = "no-such-program-here --flag"\n')
    units, notes = export_units(load_config(str(path)))
    assert "ExecStart=no-such-program-here --flag" in units[0].text
    assert any("not found here" in n for n in notes)


def test_export_a_oneshot_and_console_output(tmp_path: Path) -> None:
    path = write(
        tmp_path / "tv.toml",
        '[daemon]\nconsole = true\n[program.migrate]\ncommand = "/bin/true"\ntype = "oneshot"\n'
        '[program.web]\ncommand = "/bin/sleep 9"\ndepends_on = ["migrate:completed"]\n',
    )
    units, _ = export_units(load_config(str(path)))
    by = {u.name: u.text.splitlines() for u in units}
    migrate, web = by["migrate.service"], by["web.service"]
    for line in ("Type=oneshot", "RemainAfterExit=yes", "Restart=on-failure"):
        assert line in migrate, line
    assert "StandardOutput=journal" in web and "StandardError=journal" in web  # the console
    assert "After=migrate.service" in web and "Requires=migrate.service" in web
