"""config.py: TOML -> specs, includes, and problems that name file, line and key."""

from __future__ import annotations

import json
import math
import os
import tempfile
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from twinvisor.config.applied import config_to_dict
from twinvisor.config.load import format_problems, load_config, parse_size
from twinvisor.config.locate import Locator, split_key, toml_error_line
from twinvisor.config.paths import daemon_table_paths, default_run_dir
from twinvisor.config.specs import (
    AfterGiveUp,
    AutoRestart,
    Config,
    DependCondition,
    Dependency,
    HealthKind,
    HealthSpec,
    LogSpec,
    ProgramSpec,
    ReadyMode,
    ReadySpec,
)
from twinvisor.config.values import (
    dependency_cycles,
    held_address,
    parse_dependency,
    parse_socket_mode,
)
from twinvisor.errors import ConfigError, ConfigProblem

SUPERGO = """\
[program.test]
directory = "/home/www" # 进程运行的目录
command = " ./http_listener -arg=test world" # 运行的指令
auto_restart = true # 是否自动重启
stdout_file = "/tmp/hello.log" # 进程的标准输出，为空将不会输出
stderr_file = "/tmp/hello.err" # 进程的标准错误输出，为空将不会输出
max_retry = 3 # 重启的次数
listen_addrs = [":4041"] # 进程需要监听的端口，从文件描述符3开始，可以为空
stop_timeout = 10 # 重启时，将发送TRERM信号，如果超时进程还没有退出，将强行KILL
stop_before_restart = false # 重启时是否先停止老的进程，默认为false，既会先启动一个新的进程，再停止老的进程
[include]
files = "config/conf.d/*.toml"
"""  # noqa: E501 (seed 002's example, unchanged)


def write(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text), encoding="utf-8")
    return path


def problems(path: Path) -> list[ConfigProblem]:
    with pytest.raises(ConfigError) as info:
        load_config(str(path))
    return info.value.problems


def only_problem(path: Path) -> ConfigProblem:
    found = problems(path)
    assert len(found) == 1, found
    return found[0]


@pytest.fixture(autouse=True)
def no_run_dir_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("TWINVISOR_RUN_DIR", raising=False)


# --- loading what is valid ------------------------------------------------------------------


def test_supergo_seed_example_loads(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path / "supergo.toml", SUPERGO)))
    (p,) = cfg.programs
    assert p.name == p.program == "test"
    assert p.command == ("./http_listener", "-arg=test", "world")
    assert p.directory == "/home/www"
    assert p.restart.auto_restart is AutoRestart.ALWAYS
    assert p.restart.max_retry == 3
    assert p.stdout == LogSpec("/tmp/hello.log") and p.stderr == LogSpec("/tmp/hello.err")
    assert p.listen_addrs == (":4041",)
    assert p.stop_timeout == 10.0 and p.stop_before_restart is False
    assert p.source == f"{tmp_path / 'supergo.toml'}:1"
    assert cfg.path == str(tmp_path / "supergo.toml")


def test_daemon_defaults_are_absolute(tmp_path: Path) -> None:
    cfg = load_config(str(write(tmp_path / "a.toml", "[program.x]\ncommand = 'x'\n")))
    run = Path(cfg.daemon.run_dir)
    assert run.parent == tmp_path / ".twinvisor" and run.name.startswith("a-")
    assert cfg.daemon.run_dir == str(run)
    assert cfg.daemon.log_dir == str(run / "log")
    assert cfg.daemon.socket == str(run / "twinvisor.sock")
    x = cfg.programs[0]
    assert x.stdout.path == str(run / "log" / "x.stdout.log")
    assert x.stderr.path == str(run / "log" / "x.stderr.log")


def test_each_config_file_gets_its_own_run_dir_and_both_readers_agree(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("TWINVISOR_RUN_DIR", raising=False)
    body = "[program.x]\ncommand = 'x'\n"
    files = [write(tmp_path / n, body) for n in ("a.toml", "b.toml", "a.conf")]
    run_dirs = [load_config(str(f)).daemon.run_dir for f in files]
    assert len(set(run_dirs)) == 3  # a.toml and a.conf too: the hash keeps them apart
    for f, run_dir in zip(files, run_dirs, strict=True):
        light = daemon_table_paths(str(f))
        assert light is not None and light.run_dir == run_dir == default_run_dir(str(f))
        assert light.socket == load_config(str(f)).daemon.socket
    monkeypatch.setenv("TWINVISOR_RUN_DIR", str(tmp_path / "shared"))
    for f in files:  # the variable still wins over the default, in both readers
        assert load_config(str(f)).daemon.run_dir == str(tmp_path / "shared")
        light = daemon_table_paths(str(f))
        assert light is not None and light.run_dir == str(tmp_path / "shared")


@pytest.mark.parametrize(
    "layout",
    [
        "{programs}[daemon]\nsocket = 's.sock'\n",  # after many programs
        "daemon.socket = 's.sock'\n{programs}",  # a dotted key before any table
        "daemon = {{ socket = 's.sock' }}\n{programs}",  # an inline table
        '{programs}["daemon"]\nsocket = "s.sock"\n',  # a quoted header
        "{programs}[daemon.x]\ny = 1\n[daemon]\nsocket = 's.sock'\n",  # a table under it
        "{programs}[daemon]\nsocket = 's.sock'\nx = [\n[1], [2]]\n",  # the quick read cuts x
        "{programs}[daemon]\nsocket = 's.sock'\n[program.m]\ncommand = '''\n[daemon]\n'''\n",
    ],
)
def test_the_light_reader_finds_the_daemon_table_wherever_it_is(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, layout: str
) -> None:
    # the CLI reads only the lines that can set [daemon] (`status` with 1000 programs stays
    # quick): wherever the table is written, the socket is the one the whole file names
    monkeypatch.delenv("TWINVISOR_RUN_DIR", raising=False)
    programs = "".join(f"[program.p{i}]\ncommand = ['sleep', '1']\n" for i in range(50))
    f = write(tmp_path / "a.toml", layout.format(programs=programs))
    light = daemon_table_paths(str(f))
    assert light is not None and light.socket == str(tmp_path / "s.sock")


@pytest.mark.parametrize(
    "table",
    [
        '[daemon]\nrun_dir = "r"\n',
        "[daemon]\nrun_dir = 'r' # where\n\n# a comment\nsocket='s.sock'\n",
        '  [ daemon ]  # the table\n\trun_dir\t=\t"a b/c"\t\nlog_dir = "${HOME}/logs"\n',
        '[daemon]\nrun_dir = "tab\\there"\n',  # an escape: tomllib's
        '[daemon]\nrun_dir = """r"""\n',  # multi-line: tomllib's
        '[daemon]\n"run_dir" = "r"\n',  # a quoted key: tomllib's
        '[daemon]\nrun_dir = "r"\nrun_dir = "s"\n',  # a duplicate: invalid TOML
        '[daemon]\nrun_dir = "r"\n[daemon]\nsocket = "s"\n',  # the table twice: invalid
        'run_dir = "top"\n[daemon]\nsocket = "s"\n',  # a top-level key
        '[daemon]\nrun_dir = "r"\nlog_level = 3\n',  # not a string
        '[daemon]\nrun_dir = "r"\n[daemon.http]\nlisten = "127.0.0.1:1"\n',
        '[daemon]\nrun_dir = "caf\xc3\xa9"\n',
        '[daemon]\nrun_dir = "r\x01"\n',  # a control character: invalid
        '[daemon]\nrun_dir = "r" "s"\n',
    ],
)
def test_the_plain_daemon_table_reads_as_tomllib_does(tmp_path: Path, table: str) -> None:
    # `status` reads a [daemon] table of plain `key = "text"` lines without tomllib (which
    # imports typing); every other form goes to tomllib, so the table is the same either way
    import tomllib

    from twinvisor.config.paths import _daemon_table

    f = tmp_path / "a.toml"
    f.write_bytes(table.encode("latin-1"))
    try:
        expected = tomllib.loads(f.read_text(encoding="utf-8")).get("daemon", {})
    except (ValueError, UnicodeDecodeError):
        expected = None  # invalid TOML: the light reader has no table (the loader says why)
    got = _daemon_table(str(f))
    if expected is None:
        assert got is None or got == {}, got
    else:
        assert got == expected


def test_daemon_relative_paths_and_env_default(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    cfg_file = write(tmp_path / "a.toml", '[daemon]\nrun_dir = "run"\nlog_dir = "logs"\n')
    cfg = load_config(str(cfg_file))
    assert cfg.daemon.run_dir == str(tmp_path / "run")
    assert cfg.daemon.log_dir == str(tmp_path / "logs")
    assert cfg.daemon.socket == str(tmp_path / "run" / "twinvisor.sock")
    monkeypatch.setenv("TWINVISOR_RUN_DIR", str(tmp_path / "elsewhere"))
    cfg = load_config(str(write(tmp_path / "b.toml", "")))
    assert cfg.daemon.run_dir == str(tmp_path / "elsewhere")


def test_socket_path_too_long(tmp_path: Path) -> None:
    long_dir = "r" * 120
    p = only_problem(write(tmp_path / "a.toml", f'[daemon]\nrun_dir = "{long_dir}"\n'))
    assert (p.key, p.line) == ("daemon.socket", 1)
    assert "107" in p.message and "shorter" in p.message


def test_all_keys(tmp_path: Path) -> None:
    write(tmp_path / ".env", "# comment\nA=from_file\nexport B='quoted'\n\nC = spaced\n")
    cfg = load_config(
        str(
            write(
                tmp_path / "a.toml",
                """\
                [program.web]
                command = ["/bin/echo", "a b"]
                directory = "www"
                environment = { A = "from_config", PORT = 8080 }
                env_file = ".env"
                autostart = false
                auto_restart = "unexpected"
                stop_signal = "sigint"
                stop_timeout = 2.5
                user = "root"
                group = "0"
                numprocs = 3
                stdout_file = ""
                stderr_file = "err.log"
                min_uptime = 2
                backoff_initial = 0.5
                backoff_factor = 3
                backoff_max = 10
                exit_codes = [0, 2]
                after_give_up = "slow_retry"
                slow_retry_interval = 5
                log_max_bytes = "512KB"
                log_backups = 2
                log_timestamps = true
                listen_addrs = [":80", "127.0.0.1:8080", "[::1]:9", "unix:/x.sock", "h.example:1"]
                """,
            )
        )
    )
    assert [p.name for p in cfg.programs] == ["web:0", "web:1", "web:2"]
    assert [(p.instance, p.numprocs, p.program) for p in cfg.programs] == [
        (i, 3, "web") for i in range(3)
    ]
    p = cfg.programs[1]
    assert p.command == ("/bin/echo", "a b")
    assert p.directory == str(tmp_path / "www")
    # env_file merged under `environment`, sorted pairs
    assert p.environment == (
        ("A", "from_config"),
        ("B", "quoted"),
        ("C", "spaced"),
        ("PORT", "8080"),
    )
    assert p.autostart is False and p.stop_signal == "INT" and p.stop_timeout == 2.5
    assert (p.user, p.group) == ("root", "0")
    assert p.stdout.path is None
    assert p.stderr == LogSpec(str(tmp_path / "err.log"), 512 * 1024, 2, True)
    r = p.restart
    assert r.auto_restart is AutoRestart.UNEXPECTED and r.after_give_up is AfterGiveUp.SLOW_RETRY
    assert (r.min_uptime, r.backoff_initial, r.backoff_factor, r.backoff_max) == (2, 0.5, 3, 10)
    assert r.exit_codes == (0, 2) and r.slow_retry_interval == 5
    assert p.listen_addrs[-1] == "h.example:1"


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("false", AutoRestart.NEVER),
        ("true", AutoRestart.ALWAYS),
        ('"never"', AutoRestart.NEVER),
        ('"always"', AutoRestart.ALWAYS),
    ],
)
def test_auto_restart_values(tmp_path: Path, value: str, expected: AutoRestart) -> None:
    f = write(tmp_path / "a.toml", f"[program.x]\ncommand='x'\nauto_restart = {value}\n")
    assert load_config(str(f)).programs[0].restart.auto_restart is expected


@pytest.mark.parametrize(
    ("text", "size"),
    [(10485760, 10485760), ("10MB", 10485760), ("512KB", 524288), ("1GB", 1 << 30), ("7", 7)],
)
def test_sizes(text: int | str, size: int) -> None:
    assert parse_size(text) == size


def test_size_in_config(tmp_path: Path) -> None:
    f = write(tmp_path / "a.toml", "[program.x]\ncommand='x'\nlog_max_bytes = '1GB'\n")
    assert load_config(str(f)).programs[0].stdout.max_bytes == 1 << 30
    p = only_problem(write(tmp_path / "b.toml", "[program.x]\ncommand='x'\nlog_max_bytes='1TB'\n"))
    assert (p.key, p.line) == ("program.x.log_max_bytes", 3)


@pytest.mark.parametrize(
    ("value", "name"), [('"TERM"', "TERM"), ('"SIGHUP"', "HUP"), ("9", "KILL")]
)
def test_signal_names(tmp_path: Path, value: str, name: str) -> None:
    f = write(tmp_path / "a.toml", f"[program.x]\ncommand='x'\nstop_signal = {value}\n")
    assert load_config(str(f)).programs[0].stop_signal == name


def test_unknown_signal(tmp_path: Path) -> None:
    p = only_problem(write(tmp_path / "a.toml", "[program.x]\ncommand='x'\nstop_signal='NOPE'\n"))
    assert (p.key, p.line, p.message) == ("program.x.stop_signal", 3, 'unknown signal "NOPE"')


def test_user_and_group_that_do_not_exist(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml",
        "[program.x]\ncommand='x'\nuser = 'no-such-user-tv'\ngroup = 'no-such-group-tv'\n",
    )
    user, group = problems(f)
    assert (user.key, user.line) == ("program.x.user", 3)
    assert "no-such-user-tv" in user.message and "does not exist" in user.message
    assert (group.key, group.line) == ("program.x.group", 4)


def test_dotted_keys_and_subtables_are_located(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml",
        """\
        program.web.command = "x"
        program.web.max_retry = -1

        [program.api]
        command = "y"
        [program.api.environment]
        OK = "1"
        BAD = 1.5
        """,
    )
    retry, bad = problems(f)
    assert (retry.key, retry.line) == ("program.web.max_retry", 2)
    assert (bad.key, bad.line) == ("program.api.environment.BAD", 8)


# --- required messages ----------------------------------------------------------------------


def test_unknown_key_suggests_nearest(tmp_path: Path) -> None:
    f = write(tmp_path / "a.toml", "[program.web]\ncommand = 'x'\nautorestrat = true\n")
    p = only_problem(f)
    assert p == ConfigProblem(
        str(f),
        3,
        "program.web.autorestrat",
        "unknown key 'autorestrat'; did you mean 'auto_restart'?",
    )


def test_unknown_top_level_and_daemon_keys(tmp_path: Path) -> None:
    f = write(tmp_path / "a.toml", "[programs.x]\ncommand = 'x'\n[daemon]\nrundir = 'r'\n")
    top, daemon = problems(f)
    assert (top.key, top.line) == ("programs", 1) and "did you mean 'program'?" in top.message
    assert (daemon.key, daemon.line) == ("daemon.rundir", 4)
    assert "did you mean 'run_dir'?" in daemon.message


def test_every_problem_is_reported(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml",
        """\
        [program.a]
        command = ""
        max_retry = "3"
        numprocs = 0
        stop_timeout = -1
        [program.b]
        numprocs = 2
        max_retry = -2
        exit_codes = [0, 256]
        listen_addrs = ["80", "[::1]:80", "[zz]:1", ":70000", "unix:relative"]
        """,
    )
    found = {(p.key, p.line): p.message for p in problems(f)}
    assert found == {
        ("program.a.command", 2): "command is empty",
        ("program.a.max_retry", 3): 'expected int, got str ("3")',
        ("program.a.numprocs", 4): "expected int >= 1, got 0",
        ("program.a.stop_timeout", 5): "expected float >= 0.0, got -1",
        ("program.b", 6): "missing required key 'command'",
        ("program.b.max_retry", 8): "expected int >= 0, got -2",
        ("program.b.exit_codes[1]", 9): "expected int <= 255, got 256",
        ("program.b.listen_addrs[0]", 10): (
            "\"80\": expected ':PORT', 'HOST:PORT', '[v6]:PORT' or 'unix:/abs/path'"
        ),
        ("program.b.listen_addrs[2]", 10): '"[zz]:1": invalid IPv6 address',
        ("program.b.listen_addrs[3]", 10): '":70000": port must be a number from 0 to 65535',
        ("program.b.listen_addrs[4]", 10): '"unix:relative": a unix socket path must be absolute',
    }


@pytest.mark.parametrize(
    "name",
    [
        "",
        "..",
        ".",
        "a/b",
        "../etc",
        "-rf",
        "a b",
        "tab\there",
        "nul\u0000",
        "x" * 65,
        "web:0",
        "é",
    ],
)
def test_unsafe_program_names(tmp_path: Path, name: str) -> None:
    f = write(tmp_path / "a.toml", f"\n[program.{json.dumps(name)}]\ncommand = 'x'\n")
    p = only_problem(f)
    assert p.line == 2 and p.key.startswith("program.")
    assert "program name" in p.message


def test_safe_program_names(tmp_path: Path) -> None:
    f = write(tmp_path / "a.toml", "[program.'web.v2_A-1']\ncommand = 'x'\n")
    assert load_config(str(f)).programs[0].name == "web.v2_A-1"


def test_toml_syntax_error_has_line(tmp_path: Path) -> None:
    f = write(tmp_path / "a.toml", "[program.x]\ncommand = 'x'\nmax_retry = = 3\n")
    p = only_problem(f)
    assert (p.file, p.line) == (str(f), 3) and "invalid TOML" in p.message


def test_missing_main_file(tmp_path: Path) -> None:
    p = only_problem(tmp_path / "missing.toml")
    assert p.file == str(tmp_path / "missing.toml") and p.line is None


def test_bad_command_quoting_and_types(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml", "[program.x]\ncommand = 'echo \"open'\n[program.y]\ncommand = 3\n"
    )
    x, y = problems(f)
    assert (x.key, x.line) == ("program.x.command", 2) and "cannot split" in x.message
    assert (y.key, y.line) == ("program.y.command", 4) and "got int" in y.message


def test_non_finite_numbers(tmp_path: Path) -> None:
    p = only_problem(write(tmp_path / "a.toml", "[program.x]\ncommand='x'\nstop_timeout = inf\n"))
    assert (p.key, p.line) == ("program.x.stop_timeout", 3) and "finite" in p.message


# --- includes -------------------------------------------------------------------------------


def test_include_relative_glob_and_nested(tmp_path: Path) -> None:
    main = write(
        tmp_path / "main.toml", "[program.a]\ncommand='a'\n[include]\nfiles = 'conf.d/*.toml'\n"
    )
    write(
        tmp_path / "conf.d/b.toml",
        "[program.b]\ncommand='b'\n[include]\nfiles = ['../more/c.toml']\n",
    )
    write(tmp_path / "conf.d/d.toml", "[program.d]\ncommand='d'\n")
    write(tmp_path / "more/c.toml", "\n[program.c]\ncommand='c'\n")
    cfg = load_config(str(main))
    assert [p.name for p in cfg.programs] == ["a", "b", "c", "d"]
    assert cfg.by_name()["c"].source == f"{tmp_path / 'more/c.toml'}:2"


def test_include_glob_matching_nothing_is_fine(tmp_path: Path) -> None:
    main = write(tmp_path / "main.toml", "[include]\nfiles = ['nothing/*.toml']\n")
    assert load_config(str(main)).programs == ()


def test_include_of_missing_explicit_file(tmp_path: Path) -> None:
    main = write(tmp_path / "main.toml", "[include]\nfiles = 'gone.toml'\n")
    p = only_problem(main)  # said at the line that includes it
    assert (p.file, p.line, p.key) == (str(main), 2, "include.files")
    assert "cannot read" in p.message and "gone.toml" in p.message


def test_include_cycle(tmp_path: Path) -> None:
    a = write(tmp_path / "a.toml", "[include]\nfiles = 'b.toml'\n")
    b = write(tmp_path / "b.toml", "[program.x]\ncommand='x'\n[include]\nfiles = 'a.toml'\n")
    p = only_problem(a)
    assert (p.file, p.line, p.key) == (str(b), 4, "include.files")
    assert p.message == "include cycle: a.toml -> b.toml -> a.toml"


def test_glob_matching_the_including_file_is_not_a_cycle(tmp_path: Path) -> None:
    main = write(tmp_path / "main.toml", "[include]\nfiles = '*.toml'\n")
    write(tmp_path / "other.toml", "[program.o]\ncommand='o'\n")
    assert [p.name for p in load_config(str(main)).programs] == ["o"]


def test_duplicate_program_names_both_places(tmp_path: Path) -> None:
    main = write(
        tmp_path / "main.toml", "[include]\nfiles = 'conf.d/*.toml'\n\n[program.web]\ncommand='a'\n"
    )
    dup = write(tmp_path / "conf.d/x.toml", "# other\n[program.web]\ncommand='b'\n")
    p = only_problem(main)
    assert (p.file, p.line, p.key) == (str(dup), 2, "program.web")
    assert p.message == f"program 'web' is defined twice: {main}:4 and {dup}:2"


def test_daemon_only_in_main_file(tmp_path: Path) -> None:
    main = write(tmp_path / "main.toml", "[include]\nfiles = 'x.toml'\n")
    write(tmp_path / "x.toml", "[daemon]\nrun_dir = 'r'\n")
    p = only_problem(main)
    assert (p.file, p.line, p.key) == (str(tmp_path / "x.toml"), 1, "daemon")


def test_env_file_problems_name_the_env_file(tmp_path: Path) -> None:
    env = write(tmp_path / "app.env", "OK=1\nnot a pair\n")
    main = write(tmp_path / "a.toml", "[program.x]\ncommand='x'\nenv_file='app.env'\n")
    p = only_problem(main)
    assert (p.file, p.line, p.key) == (str(env), 2, "program.x.env_file")
    write(tmp_path / "b.toml", "[program.x]\ncommand='x'\nenv_file='none.env'\n")
    assert "cannot read env_file" in only_problem(tmp_path / "b.toml").message


# --- output ---------------------------------------------------------------------------------


def test_config_to_dict_is_json(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml", SUPERGO + "[program.w]\ncommand='w'\nnumprocs=2\nenvironment={A='1'}\n"
    )
    cfg = load_config(str(f))
    data = config_to_dict(cfg)
    assert json.loads(json.dumps(data)) == data
    assert data["programs"][0]["restart"]["auto_restart"] == "always"
    assert data["programs"][1]["environment"] == {"A": "1"}
    assert [p["name"] for p in data["programs"]] == ["test", "w:0", "w:1"]


def test_format_problems(tmp_path: Path) -> None:
    f = write(tmp_path / "a.toml", "[program.x]\nmax_retry = 'a'\n")
    with pytest.raises(ConfigError) as info:
        load_config(str(f))
    text = format_problems(info.value)
    assert text.splitlines()[0] == "2 problems in config:"
    assert f"  {f}:2: [program.x.max_retry] expected int" in text


# --- the locator ----------------------------------------------------------------------------


def test_locator() -> None:
    loc = Locator(
        textwrap.dedent(
            '''\
            top = 1
            [program.web]
            command = """
            fake = 1
            """
            environment = { A = "1" }
            [ program . "we.b" ]
            'x y' = 2
            [[arr.t]]
            a.b = 3
            '''
        )
    )
    assert loc.line(["top"]) == 1
    assert loc.line(["program"]) == 2
    assert loc.line(["program", "web", "command"]) == 3
    assert loc.line(["program", "web", "fake"]) == 2  # inside a string: falls back to the table
    assert loc.line(["program", "web", "environment", "A"]) == 6
    assert loc.line(["program", "we.b", "x y"]) == 8
    assert loc.line(["arr", "t", "a", "b"]) == 10
    assert loc.line(["nothing"]) is None


def test_split_key_and_error_line() -> None:
    assert split_key("program . \"a.b\" . 'c'") == ("program", "a.b", "c")
    assert toml_error_line("Invalid value (at line 12, column 3)") == 12
    assert toml_error_line("no position") is None


# --- never anything but ConfigError ---------------------------------------------------------

_KEYS = [
    "command", "directory", "environment", "env_file", "autostart", "auto_restart",
    "stop_signal", "stop_timeout", "stop_before_restart", "user", "group", "numprocs",
    "stdout_file", "stderr_file", "listen_addrs", "max_retry", "min_uptime", "backoff_initial",
    "backoff_factor", "backoff_max", "exit_codes", "after_give_up", "slow_retry_interval",
    "log_max_bytes", "log_backups", "log_timestamps", "ready", "ready_timeout", "watchdog_sec",
    "health", "depends_on", "restart_batch", "socket_mode", "socket_owner", "bogus",
]  # fmt: skip

_HEALTH_KEYS = ["http", "tcp", "command", "interval", "timeout", "failures", "x"]
_scalars = (
    st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats()
    | st.text(max_size=20)
    | st.sampled_from(["TERM", "10MB", ":80", "[::1]:1", "unix:/x", "always", "slow_retry", ""])
    | st.sampled_from(["notify", "tcp://h:80", "http://h/", "delay:1", "0660", "root:root", "x"])
    | st.sampled_from(["http", "tcp", "command", "interval", "x:healthy", "x:started"])
)
_values = st.recursive(
    _scalars,
    lambda inner: (
        st.lists(inner, max_size=3)
        | st.dictionaries(st.text(max_size=5), inner, max_size=3)
        | st.dictionaries(st.sampled_from(_HEALTH_KEYS), inner, max_size=3)  # health tables
    ),
    max_leaves=6,
)


def _toml(value: Any) -> str:
    """A tiny TOML writer for the values hypothesis makes."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return (
            "nan"
            if math.isnan(value)
            else ("inf" if value > 0 else "-inf")
            if math.isinf(value)
            else repr(value)
        )
    if isinstance(value, int):
        return str(value)
    if isinstance(value, str):
        return json.dumps(value).replace("\x7f", "\\u007f")
    if isinstance(value, list):
        return "[" + ", ".join(_toml(v) for v in value) + "]"
    return "{" + ", ".join(f"{_toml(k)} = {_toml(v)}" for k, v in value.items()) + "}"


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(name=st.text(max_size=8), table=st.dictionaries(st.sampled_from(_KEYS), _values, max_size=6))
def test_random_program_values_raise_only_config_error(name: str, table: dict[str, Any]) -> None:
    table = {"command": "x", **table}  # so that valid programs are made too, not only errors
    body = "\n".join(f"{k} = {_toml(v)}" for k, v in table.items())
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "a.toml")
        with open(path, "w", encoding="utf-8") as f:
            f.write(f"[program.{_toml(name)}]\n{body}\n")
        try:
            cfg = load_config(path)
        except ConfigError as e:
            assert e.problems and all(isinstance(p, ConfigProblem) for p in e.problems)
            format_problems(e)
        else:
            assert isinstance(cfg, Config)
            json.dumps(config_to_dict(cfg))


def test_diamond_include_loads_each_file_once(tmp_path: Path) -> None:
    main = write(tmp_path / "main.toml", "[include]\nfiles = ['b.toml', 'c.toml']\n")
    write(tmp_path / "b.toml", "[include]\nfiles = 'd.toml'\n")
    write(tmp_path / "c.toml", "[include]\nfiles = 'd.toml'\n")
    write(tmp_path / "d.toml", "[program.d]\ncommand = 'd'\n")
    assert [p.name for p in load_config(str(main)).programs] == ["d"]


def test_tables_of_the_wrong_type(tmp_path: Path) -> None:
    f = write(tmp_path / "a.toml", "include = 3\n[program]\nweb = 'not a table'\n")
    top, web = problems(f)
    assert (top.key, top.line) == ("include", 1) and "must be a table" in top.message
    assert (web.key, web.line) == ("program.web", 3) and "must be a table" in web.message


# --- readiness, health, dependencies, sockets -----------------------------------------------


def prog(tmp_path: Path, body: str, name: str = "a.toml") -> Path:
    """A config whose first lines are `[program.x]` and `command = 'x'`: `body` starts at 3."""
    return write(tmp_path / name, "[program.x]\ncommand = 'x'\n" + textwrap.dedent(body))


def one(path: Path) -> ProgramSpec:
    (p,) = load_config(str(path)).programs
    return p


def test_new_keys_defaults(tmp_path: Path) -> None:
    p = one(prog(tmp_path, ""))
    assert p.ready == ReadySpec(ReadyMode.SPAWN, "", 0.0, 30.0)
    assert p.health is None and p.watchdog_sec == 0.0 and p.depends_on == ()
    assert (p.restart_batch, p.socket_mode, p.socket_owner) == (1, 0o660, None)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("spawn", ReadySpec(ReadyMode.SPAWN, timeout=5)),
        ("notify", ReadySpec(ReadyMode.NOTIFY, timeout=5)),
        ("tcp://127.0.0.1:9000", ReadySpec(ReadyMode.TCP, "127.0.0.1:9000", timeout=5)),
        ("tcp://[::1]:9000", ReadySpec(ReadyMode.TCP, "[::1]:9000", timeout=5)),
        ("http://localhost:8080/health", ReadySpec(ReadyMode.HTTP, "http://localhost:8080/health", timeout=5)),  # noqa: E501
        ("http://db.example", ReadySpec(ReadyMode.HTTP, "http://db.example", timeout=5)),
        ("delay:2.5", ReadySpec(ReadyMode.DELAY, delay=2.5, timeout=5)),
        ("delay:0", ReadySpec(ReadyMode.DELAY, delay=0, timeout=5)),
    ],
)  # fmt: skip
def test_ready_values(tmp_path: Path, value: str, expected: ReadySpec) -> None:
    assert one(prog(tmp_path, f"ready = '{value}'\nready_timeout = 5\n")).ready == expected


@pytest.mark.parametrize(
    ("body", "key", "fragment"),
    [
        ("ready = 'https://localhost/'", "ready", "https is not supported"),
        ("ready = 'notfy'", "ready", "did you mean 'notify'?"),
        ("ready = 'ready'", "ready", "expected 'spawn', 'notify', 'tcp://HOST:PORT'"),
        ("ready = 'tcp://:80'", "ready", "expected 'HOST:PORT'"),
        ("ready = 'tcp://h:0'", "ready", "port must be a number from 1 to 65535"),
        ("ready = 'tcp://[zz]:1'", "ready", "invalid IPv6 address"),
        ("ready = 'http://'", "ready", "the URL has no host"),
        ("ready = 'http://h:99999/'", "ready", "out of range"),
        ("ready = 'http://u:p@h/'", "ready", "passwords in the URL are not supported"),
        ("ready = 'ftp://h/'", "ready", "expected 'spawn'"),
        ("ready = 'delay:x'", "ready", "'delay:SECONDS' with SECONDS >= 0"),
        ("ready = 'delay:-1'", "ready", "'delay:SECONDS' with SECONDS >= 0"),
        ("ready = 'delay:inf'", "ready", "'delay:SECONDS' with SECONDS >= 0"),
        ("ready = 'delay:40'", "ready", "not shorter than ready_timeout (30s)"),
        ("ready = 3", "ready", "expected str, got int (3)"),
        ("ready_timeout = 0", "ready_timeout", "expected float > 0.0, got 0"),
        ("ready_timeout = inf", "ready_timeout", "must be a finite number"),
        ("watchdog_sec = -1", "watchdog_sec", "expected float >= 0.0, got -1"),
        ("restart_batch = 0", "restart_batch", "expected int >= 1, got 0"),
        ("restart_batch = 1.5", "restart_batch", "expected int, got float"),
    ],
)
def test_value_problems(tmp_path: Path, body: str, key: str, fragment: str) -> None:
    f = prog(tmp_path, body + "\n")
    p = only_problem(f)
    assert (p.file, p.line, p.key) == (str(f), 3, f"program.x.{key}")
    assert fragment in p.message, p.message


def test_notify_watchdog_and_batch_are_fine_anywhere(tmp_path: Path) -> None:
    p = one(
        prog(
            tmp_path,
            """\
            listen_addrs = [":8080", "unix:/run/x.sock"]
            ready = "notify"
            watchdog_sec = 2.5
            numprocs = 1
            restart_batch = 4
            """,
        )
    )
    assert (p.ready.mode, p.watchdog_sec, p.restart_batch) == (ReadyMode.NOTIFY, 2.5, 4)


@pytest.mark.parametrize(
    ("listen", "target"),
    [
        (":8080", "127.0.0.1:8080"),
        ("0.0.0.0:8080", "app.example:8080"),
        ("[::]:8080", "[::1]:8080"),
        ("127.0.0.1:8080", "localhost:8080"),
        ("localhost:8080", "LOCALHOST:8080"),
    ],
)
def test_ready_tcp_on_a_held_listen_addr(tmp_path: Path, listen: str, target: str) -> None:
    f = prog(tmp_path, f"listen_addrs = ['{listen}']\nready = 'tcp://{target}'\n")
    p = only_problem(f)
    assert (p.file, p.line, p.key) == (str(f), 4, "program.x.ready")
    assert "would always succeed" in p.message
    assert f"twinvisor itself holds the socket {listen!r}" in p.message
    assert '"notify"' in p.message


@pytest.mark.parametrize(
    ("listen", "target"),
    [(":8080", "127.0.0.1:8081"), ("10.0.0.1:8080", "127.0.0.1:8080"), ("unix:/x", "h:1")],
)
def test_ready_tcp_on_another_address_is_fine(tmp_path: Path, listen: str, target: str) -> None:
    f = prog(tmp_path, f"listen_addrs = ['{listen}']\nready = 'tcp://{target}'\n")
    assert one(f).ready.target == target


def test_health_tables(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml",
        """\
        [program.h]
        command = "h"
        [program.h.health]
        http = "http://127.0.0.1:8080/healthz"
        interval = 2
        timeout = 0.5
        failures = 1

        [program.t]
        command = "t"
        health = { tcp = "127.0.0.1:5432" }

        [program.c]
        command = "c"
        health.command = "pg_isready -q 'a b'"

        [program.l]
        command = "l"
        health = { command = ["redis-cli", "ping"] }
        """,
    )
    specs = load_config(str(f)).by_name()
    assert specs["h"].health == HealthSpec(
        HealthKind.HTTP, "http://127.0.0.1:8080/healthz", (), 2.0, 0.5, 1
    )
    assert specs["t"].health == HealthSpec(HealthKind.TCP, "127.0.0.1:5432")
    assert specs["c"].health == HealthSpec(HealthKind.COMMAND, command=("pg_isready", "-q", "a b"))
    assert specs["l"].health == HealthSpec(HealthKind.COMMAND, command=("redis-cli", "ping"))
    assert specs["l"].health.interval == 10 and specs["l"].health.timeout == 5
    assert specs["l"].health.failures == 3


def test_health_problems(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml",
        """\
        [program.none]
        command = "x"
        [program.none.health]
        interval = 3

        [program.two]
        command = "x"
        health = { http = "http://h/", tcp = "h:1" }

        [program.bad]
        command = "x"
        listen_addrs = [":81"]
        [program.bad.health]
        tcp = "localhost:81"
        intervl = 1
        timeout = 0
        failures = 0

        [program.https]
        command = "x"
        health.http = "https://h/"

        [program.cmd]
        command = "x"
        health = { command = "" }

        [program.notable]
        command = "x"
        health = "http://h/"

        [program.port]
        command = "x"
        health = { tcp = "h" }
        """,
    )
    found = {(p.line, p.key): p.message for p in problems(f)}
    assert all(p.file == str(f) for p in problems(f))
    assert found == {
        (3, "program.none.health"): (
            "a health table needs exactly one of 'http', 'tcp' or 'command'; none is set"
        ),
        (8, "program.two.health"): (
            "a health table needs exactly one of 'http', 'tcp' or 'command'; got 'http' and 'tcp'"
        ),
        (14, "program.bad.health.tcp"): found[(14, "program.bad.health.tcp")],
        (15, "program.bad.health.intervl"): "unknown key 'intervl'; did you mean 'interval'?",
        (16, "program.bad.health.timeout"): "expected float > 0.0, got 0",
        (17, "program.bad.health.failures"): "expected int >= 1, got 0",
        (21, "program.https.health.http"): found[(21, "program.https.health.http")],
        (25, "program.cmd.health.command"): "health command is empty",
        (29, "program.notable.health"): 'expected table, got str ("http://h/")',
        (33, "program.port.health.tcp"): (
            "\"h\": expected 'HOST:PORT' (or '[v6]:PORT') to connect to"
        ),
    }
    assert "would always succeed" in found[(14, "program.bad.health.tcp")]
    assert found[(14, "program.bad.health.tcp")].endswith(
        "check it with http:// or a command instead"
    )
    assert "https is not supported" in found[(21, "program.https.health.http")]


def test_depends_on(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml",
        """\
        [program.web]
        command = "w"
        numprocs = 2
        depends_on = ["db:healthy", "cache", "migrate:started", "queue:ready"]
        [program.db]
        command = "d"
        health = { tcp = "127.0.0.1:5432" }
        [program.cache]
        command = "c"
        [program.migrate]
        command = "m"
        [program.queue]
        command = "q"
        depends_on = [" cache : started "]
        """,
    )
    specs = load_config(str(f)).by_name()
    expected = (
        Dependency("db", DependCondition.HEALTHY),
        Dependency("cache", DependCondition.READY),
        Dependency("migrate", DependCondition.STARTED),
        Dependency("queue", DependCondition.READY),
    )
    assert specs["web:0"].depends_on == specs["web:1"].depends_on == expected
    assert specs["queue"].depends_on == (Dependency("cache", DependCondition.STARTED),)
    assert specs["db"].depends_on == ()


def test_depends_on_problems(tmp_path: Path) -> None:
    main = write(
        tmp_path / "main.toml",
        """\
        [include]
        files = "conf.d/*.toml"

        [program.web]
        command = "w"
        depends_on = [
          "databse",
          "web",
          "cache:healthy",
          "cache:helthy",
          "",
          "cache",
          "cache:started",
        ]
        """,
    )
    inc = write(tmp_path / "conf.d/db.toml", "[program.database]\ncommand='d'\n")
    write(tmp_path / "conf.d/cache.toml", "[program.cache]\ncommand='c'\n")
    found = problems(main)
    assert {p.file for p in found} == {str(main)}
    assert {(p.line, p.key): p.message for p in found} == {
        (6, "program.web.depends_on[0]"): (
            "depends on 'databse', but there is no such program; did you mean 'database'?"
        ),
        (6, "program.web.depends_on[1]"): "program 'web' depends on itself",
        (6, "program.web.depends_on[2]"): (
            "'cache' has no [program.cache.health] table, so it never becomes healthy; "
            "add one, or depend on 'cache:ready'"
        ),
        (6, "program.web.depends_on[3]"): (
            "invalid condition 'helthy' in \"cache:helthy\"; expected one of started, ready, "
            "healthy, completed; did you mean 'healthy'?"
        ),
        (6, "program.web.depends_on[4]"): "expected 'NAME' or 'NAME:CONDITION', got \"\"",
        (6, "program.web.depends_on[5]"): "'cache' is listed twice",
        (6, "program.web.depends_on[6]"): "'cache' is listed twice",
    }
    # the program named in the suggestion lives in an included file
    assert load_config(str(inc)).programs[0].name == "database"


def test_unknown_dependency_without_a_close_name_lists_programs(tmp_path: Path) -> None:
    f = write(tmp_path / "a.toml", "[program.a]\ncommand='a'\ndepends_on=['zzz']\n")
    p = only_problem(f)
    assert (p.line, p.key) == (3, "program.a.depends_on[0]")
    assert p.message == "depends on 'zzz', but there is no such program; programs: a"


def test_dependency_cycle_is_shown_once(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml",
        """\
        [program.a]
        command = "a"
        depends_on = ["c", "b:started"]
        [program.b]
        command = "b"
        depends_on = ["a"]
        [program.c]
        command = "c"
        """,
    )
    p = only_problem(f)
    assert (p.file, p.line, p.key) == (str(f), 3, "program.a.depends_on[1]")
    assert p.message == "dependency cycle: a -> b -> a"


def test_dependency_cycle_across_files(tmp_path: Path) -> None:
    main = write(
        tmp_path / "main.toml",
        "[include]\nfiles = 'more.toml'\n[program.a]\ncommand='a'\ndepends_on=['c']\n",
    )
    more = write(
        tmp_path / "more.toml",
        "[program.b]\ncommand='b'\ndepends_on=['a']\n[program.c]\ncommand='c'\ndepends_on=['b']\n",
    )
    p = only_problem(main)
    assert (p.file, p.line, p.key) == (str(main), 5, "program.a.depends_on[0]")
    assert p.message == "dependency cycle: a -> c -> b -> a"
    assert more.exists()


def test_dependency_on_a_broken_program_is_not_a_second_problem(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml",
        "[program.a]\ncommand='a'\ndepends_on=['b:healthy']\n"
        "[program.b]\ncommand='b'\nhealth = { tcp = 'nope' }\n",
    )
    p = only_problem(f)
    assert (p.line, p.key) == (6, "program.b.health.tcp")


@pytest.mark.parametrize(
    ("value", "mode"),
    [('"0640"', 0o640), ('"640"', 0o640), ('"0o600"', 0o600), ("0o660", 0o660), ("0", 0)],
)
def test_socket_mode(tmp_path: Path, value: str, mode: int) -> None:
    assert one(prog(tmp_path, f"socket_mode = {value}\n")).socket_mode == mode


@pytest.mark.parametrize(
    ("value", "fragment"),
    [
        ('"0666"', 'socket_mode "0666" (0o666) lets every user write to the socket: '
                   "world-writable sockets are refused"),
        ("0o777", "socket_mode 511 (0o777) lets every user write"),
        ('"2"', "world-writable sockets are refused"),
        ('"0668"', 'expected octal digits such as "0660", got "0668"'),
        ('"rw-rw----"', "expected octal digits"),
        ('"01660"', "expected octal digits"),
        ("660", 'socket_mode must be permission bits from 0o000 to 0o777, got 660 '
                '(did you mean "0660" or 0o660?)'),
        ("-1", "socket_mode must be permission bits"),
        ("6.6", "expected int | str, got float"),
    ],
)  # fmt: skip
def test_socket_mode_problems(tmp_path: Path, value: str, fragment: str) -> None:
    f = prog(tmp_path, f"socket_mode = {value}\n")
    p = only_problem(f)
    assert (p.file, p.line, p.key) == (str(f), 3, "program.x.socket_mode")
    assert fragment in p.message, p.message


@pytest.mark.parametrize("value", ["root", "root:root", "0:0", "0"])
def test_socket_owner(tmp_path: Path, value: str) -> None:
    assert one(prog(tmp_path, f"socket_owner = '{value}'\n")).socket_owner == value


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("no-such-user-tv", 'socket_owner: user "no-such-user-tv" does not exist on this system'),
        ("root:no-such-group-tv", 'socket_owner: group "no-such-group-tv" does not exist on this system'),  # noqa: E501
        ("root:", "socket_owner: expected 'user' or 'user:group', got \"root:\""),
        (":root", "socket_owner: expected 'user' or 'user:group', got \":root\""),
        ("a:b:c", "socket_owner: expected 'user' or 'user:group', got \"a:b:c\""),
    ],
)  # fmt: skip
def test_socket_owner_problems(tmp_path: Path, value: str, message: str) -> None:
    f = prog(tmp_path, f"socket_owner = '{value}'\n")
    p = only_problem(f)
    assert (p.file, p.line, p.key, p.message) == (str(f), 3, "program.x.socket_owner", message)


def test_socket_owner_user_and_group_both_missing(tmp_path: Path) -> None:
    user, group = problems(prog(tmp_path, "socket_owner = 'no-such-user-tv:no-such-group-tv'\n"))
    assert "user" in user.message and "group" in group.message
    assert user.line == group.line == 3


def test_config_to_dict_new_fields(tmp_path: Path) -> None:
    f = write(
        tmp_path / "a.toml",
        """\
        [program.a]
        command = "a"
        ready = "http://127.0.0.1:1/up"
        watchdog_sec = 3
        depends_on = ["b:healthy"]
        restart_batch = 2
        socket_mode = "0600"
        socket_owner = "root"
        [program.b]
        command = "b"
        health = { command = "true", failures = 2 }
        """,
    )
    a, b = config_to_dict(load_config(str(f)))["programs"]
    assert json.loads(json.dumps(a)) == a
    assert a["ready"] == {
        "mode": "http",
        "target": "http://127.0.0.1:1/up",
        "delay": 0.0,
        "timeout": 30.0,
    }
    assert a["health"] is None and a["watchdog_sec"] == 3
    assert a["depends_on"] == [{"program": "b", "condition": "healthy"}]
    assert (a["restart_batch"], a["socket_mode"], a["socket_owner"]) == (2, "0600", "root")
    assert b["health"] == {
        "kind": "command",
        "target": "",
        "command": ["true"],
        "interval": 10.0,
        "timeout": 5.0,
        "failures": 2,
    }
    assert b["socket_mode"] == "0660"


def test_values_module() -> None:
    assert held_address("127.0.0.1:80", [":80"]) == ":80"
    assert held_address("127.0.0.1:80", ["unix:/x", "10.1.1.1:80", ":81"]) is None
    assert parse_socket_mode("0750") == 0o750
    with pytest.raises(ValueError, match="world-writable"):
        parse_socket_mode(0o606)
    assert parse_dependency("db") == Dependency("db")
    assert dependency_cycles({"a": ["b"], "b": ["c"], "c": ["b"], "d": ["d"]}) == [
        ["b", "c"],
        ["d"],
    ]
    # a long chain does not hit the recursion limit
    chain = {f"p{i}": [f"p{i + 1}"] for i in range(5000)} | {"p5000": ["p0"]}
    (cycle,) = dependency_cycles(chain)
    assert len(cycle) == 5001 and cycle[0] == "p0"
