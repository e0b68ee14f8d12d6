"""What a supervisord.conf says, in twinvisor's config: ${VAR} at load time, per-instance
placeholders and names, groups, priority, umask, redirect_stderr, /dev/stdout."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from twinvisor.config.applied import config_to_dict
from twinvisor.config.expand import Instance, expand_env, expand_instance
from twinvisor.config.load import load_config
from twinvisor.config.paths import daemon_table_paths
from twinvisor.config.specs import match_instances
from twinvisor.errors import ConfigError, ConfigProblem


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    return info.value.problems


@pytest.fixture(autouse=True)
def environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWINVISOR_RUN_DIR", raising=False)
    monkeypatch.setenv("APP_DIR", "/srv/app")
    monkeypatch.setenv("WORKERS", "3")
    monkeypatch.setenv("EMPTY", "")
    monkeypatch.delenv("UNSET_VAR", raising=False)


# --- ${VAR} ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "out"),
    [
        ("${APP_DIR}/bin", "/srv/app/bin"),
        ("${UNSET_VAR:-dflt}", "dflt"),
        ("${EMPTY:-dflt}", "dflt"),  # :- also replaces an empty value, as in sh
        ("${EMPTY-dflt}", ""),  # - only an unset one
        ("${UNSET_VAR-}", ""),
        ("$${APP_DIR}", "${APP_DIR}"),  # the escape
        ("echo $HOME $$ $1", "echo $HOME $$ $1"),  # shell syntax without braces is left alone
        ("a${WORKERS}b${WORKERS}", "a3b3"),
    ],
)
def test_env_expansion(text: str, out: str) -> None:
    import os

    assert expand_env(text, os.environ) == (out, None)


def test_env_expansion_at_load_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    path = write(
        tmp_path / "t.toml",
        """\
        [daemon]
        run_dir = "${APP_DIR:-/x}/run"
        [program.web]
        command = ["${APP_DIR}/server", "--workers", "${WORKERS}"]
        numprocs = "${WORKERS}"
        autostart = "${AUTOSTART:-false}"
        stop_timeout = "${STOP:-2.5}"
        environment = { HOME_OF_APP = "${APP_DIR}", LITERAL = "$${NOT_ME}" }
        """,
    )
    config = load_config(str(path))
    web = config.programs[0]
    assert web.command == ("/srv/app/server", "--workers", "3")
    assert len(config.programs) == 3  # a number from a variable
    assert web.autostart is False and web.stop_timeout == 2.5
    assert dict(web.environment) == {"HOME_OF_APP": "/srv/app", "LITERAL": "${NOT_ME}"}
    assert config.daemon.run_dir == "/srv/app/run"
    # the light [daemon] reader of the CLI and the guard agrees
    paths = daemon_table_paths(str(path))
    assert paths is not None and paths.run_dir == "/srv/app/run"
    # read again with another environment: the values follow it
    monkeypatch.setenv("WORKERS", "1")
    assert len(load_config(str(path)).programs) == 1


def test_unknown_variable_is_an_error_with_file_and_line(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.toml",
        """\
        [program.web]
        command = "serve"
        directory = "${UNSET_VAR}/web"
        listen_addrs = [":80", "${UNSET_VAR}"]
        numprocs = "${APP_DIR}"
        user = "${oops bad}"
        """,
    )
    found = {p.key: (p.line, p.message) for p in problems(path)}
    assert found["program.web.directory"][0] == 3
    assert "'UNSET_VAR' is not set" in found["program.web.directory"][1]
    assert found["program.web.listen_addrs[1]"][0] == 4
    assert found["program.web.numprocs"] == (5, 'expected int, got str ("/srv/app")')
    assert "invalid variable reference" in found["program.web.user"][1]
    assert daemon_table_paths(str(path)) is not None  # no [daemon] table: nothing to expand


# --- placeholders and instance names ---------------------------------------------------------


def test_placeholders_leave_other_braces_alone() -> None:
    inst = Instance(7, "web_07", "web", "app", 4)
    assert expand_instance("--port 80{instance:02} {name} {program} {group} {numprocs}", inst) == (
        "--port 8007 web_07 web app 4"
    )
    text = "sh -c 'for i in {1..3}; do echo {a,b}; done; awk \"{print $1}\"' {} {json: 1}"
    assert expand_instance(text, inst) == text
    assert expand_instance("{{instance}} {{name}}", inst) == "{instance} {name}"
    with pytest.raises(ValueError, match="take a width"):
        expand_instance("{name:02}", inst)


def test_every_instance_gets_its_own_values(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.toml",
        """\
        [group.app]
        programs = ["web"]
        [program.web]
        command = "serve --port 80{instance:02} --name {name}"
        numprocs = 3
        numprocs_start = 1
        instance_name = "{program}_{instance:02}"
        directory = "/srv/{name}"
        environment = { PORT = "90{instance:02}", GROUP = "{group}", N = "{numprocs}" }
        listen_addrs = ["127.0.0.1:70{instance:02}"]
        stdout_file = "/var/log/{name}.out"
        pidfile = "/run/{name}.pid"
        ready = "tcp://127.0.0.1:90{instance:02}"
        [program.web.health]
        http = "http://127.0.0.1:90{instance:02}/health"
        """,
    )
    specs = load_config(str(path)).programs
    assert [s.name for s in specs] == ["web_01", "web_02", "web_03"]
    assert [s.instance for s in specs] == [1, 2, 3]
    two = specs[1]
    assert two.command == ("serve", "--port", "8002", "--name", "web_02")
    assert two.directory == "/srv/web_02"
    assert dict(two.environment) == {"PORT": "9002", "GROUP": "app", "N": "3"}
    assert two.listen_addrs == ("127.0.0.1:7002",)
    assert two.stdout.path == "/var/log/web_02.out"
    assert two.pidfile == "/run/web_02.pid"
    assert two.ready.target == "127.0.0.1:9002"
    assert two.health is not None and two.health.target == "http://127.0.0.1:9002/health"
    # the default stderr log is named after the instance
    assert two.stderr.path is not None and two.stderr.path.endswith("/web_02.stderr.log")


def test_instance_problems_name_the_instance(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.toml",
        """\
        [program.web]
        command = "serve"
        numprocs = 12
        listen_addrs = [":6553{instance}"]
        [program.one]
        command = "x"
        numprocs = 2
        instance_name = "{program}"
        [program.ok]
        command = "x"
        numprocs = 2
        [program.two]
        command = "x"
        instance_name = "ok:1"
        [program.three]
        command = "x {instance:zz}"
        """,
    )
    found = {p.key: p for p in problems(path)}
    bad = found["program.web.listen_addrs[0]"]
    assert bad.line == 4 and "65536" in bad.message and "(instance 'web:6')" in bad.message
    assert "has no {instance}" in found["program.one.instance_name"].message
    assert "'ok:1' is also an instance of program 'ok'" in found["program.two"].message
    assert "invalid placeholder '{instance:zz}'" in found["program.three.command"].message


# --- groups, priority, umask, stderr, console ---------------------------------------------


def test_groups(tmp_path: Path) -> None:
    write(tmp_path / "conf.d" / "more.toml", '[group.ops]\nprograms = ["cron"]\n')
    path = write(
        tmp_path / "t.toml",
        """\
        [include]
        files = "conf.d/*.toml"
        [group.workers]
        programs = ["a", "b"]
        [program.a]
        command = "x"
        numprocs = 2
        [program.b]
        command = "x"
        [program.cron]
        command = "x"
        [program.web]
        command = "x"
        """,
    )
    config = load_config(str(path))
    groups = {g.name: g.programs for g in config.groups}
    assert groups == {"workers": ("a", "b"), "ops": ("cron",)}
    assert config_to_dict(config)["groups"][0]["programs"] == ["a", "b"]
    instances = [(p.name, p.program) for p in config.programs]
    assert match_instances(["workers:*"], instances, groups) == (["a:0", "a:1", "b"], [])
    assert match_instances(["workers"], instances, groups)[0] == ["a:0", "a:1", "b"]
    assert match_instances(["workers:a:1", "ops:*"], instances, groups)[0] == ["a:1", "cron"]
    assert match_instances(["workers:cron", "a:*"], instances, groups) == (
        ["a:0", "a:1"],
        ["workers:cron"],
    )


def test_group_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.toml",
        """\
        [group.web]
        programs = ["a"]
        [group.g1]
        programs = ["a", "nope"]
        [group.g2]
        programs = []
        [group.g3]
        progams = ["a"]
        [program.a]
        command = "x"
        [program.web]
        command = "x"
        """,
    )
    found = [(p.line, p.key, p.message) for p in problems(path)]
    assert found[0] == (1, "group.web", "group 'web' has the name of a program; rename one")
    assert found[1][:2] == (4, "group.g1.programs[0]") and "already in group 'web'" in found[1][2]
    assert "'nope', but there is no such program" in found[2][2]
    assert found[3] == (6, "group.g2.programs", "a group needs at least one program")
    assert {(line, m) for line, _, m in found[4:]} == {
        (8, "unknown key 'progams'; did you mean 'programs'?"),
        (7, "missing required key 'programs'"),
    }


def test_priority_umask_redirect_console(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.toml",
        """\
        [program.a]
        command = "x"
        priority = 10
        umask = "027"
        redirect_stderr = true
        stdout_file = "/dev/stdout"
        [program.b]
        command = "x"
        umask = 0o002
        stderr_file = "/dev/stderr"
        """,
    )
    a, b = load_config(str(path)).programs
    assert (a.priority, a.umask, a.redirect_stderr) == (10, 0o027, True)
    assert a.stdout.console == "stdout" and a.stdout.path is None
    assert a.stderr.path is None and a.stderr.console is None  # in the stdout pipe
    assert (b.priority, b.umask, b.redirect_stderr) == (999, 0o002, False)
    assert b.stderr.console == "stderr" and b.stdout.path is not None


def test_umask_and_redirect_problems(tmp_path: Path) -> None:
    path = write(
        tmp_path / "t.toml",
        """\
        [program.a]
        command = "x"
        umask = "999"
        redirect_stderr = true
        stderr_file = "/tmp/err"
        [program.b]
        command = "x"
        umask = 512
        priority = -1
        """,
    )
    found = {p.key: p.message for p in problems(path)}
    assert found["program.a.umask"].startswith("expected octal digits")
    assert "no effect with redirect_stderr" in found["program.a.stderr_file"]
    assert "from 0o000 to 0o777" in found["program.b.umask"]
    assert found["program.b.priority"] == "expected int >= 0, got -1"


def test_export_carries_the_new_keys(tmp_path: Path) -> None:
    from twinvisor.cli.export_systemd import export_units

    path = write(
        tmp_path / "t.toml",
        """\
        [program.a]
        command = "/bin/true"
        umask = "027"
        stdout_file = "/dev/stdout"
        redirect_stderr = true
        numprocs = 2
        numprocs_start = 1
        [program.b]
        command = "/bin/true"
        stderr_file = "/dev/stderr"
        """,
    )
    units, _ = export_units(load_config(str(path)))
    by = {u.name: u.text for u in units}
    assert sorted(by) == ["a-1.service", "a-2.service", "b.service"]
    assert "UMask=0027" in by["a-1.service"]
    assert "StandardOutput=journal" in by["a-1.service"]
    assert "StandardError=inherit" in by["a-1.service"]
    assert "StandardError=journal" in by["b.service"] and "UMask" not in by["b.service"]
