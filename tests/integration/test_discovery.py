"""discovery.find_matches with processes started by hand, `twinvisor find`, and the `find` /
`pidfile` config keys."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from tests.support.helpers import wait_until
from twinvisor.config.load import load_config
from twinvisor.config.specs import ProgramSpec
from twinvisor.errors import ConfigError
from twinvisor.linux.discovery import find_matches
from twinvisor.linux.kernel import process_start_time

SCRIPT = "import time\ntime.sleep(120)\n"


class Procs:
    """Processes started by the test, killed at the end."""

    def __init__(self) -> None:
        self.started: list[subprocess.Popen[bytes]] = []

    def start(self, argv: list[str], cwd: str) -> int:
        p = subprocess.Popen(argv, cwd=cwd, stdin=subprocess.DEVNULL)
        self.started.append(p)
        # until exec, the child still shows pytest's command line
        wait_until(lambda: _cmdline(p.pid) == argv, what=f"exec of {argv}")
        return p.pid

    def close(self) -> None:
        for p in self.started:
            p.kill()
            p.wait()


def _cmdline(pid: int) -> list[str]:
    try:
        return list(psutil.Process(pid).cmdline())
    except psutil.Error:
        return []


@pytest.fixture
def procs() -> Iterator[Procs]:
    p = Procs()
    try:
        yield p
    finally:
        p.close()


@pytest.fixture
def dirs(tmp_path: Path) -> tuple[str, str]:
    """Two directories with the same script in each: only the program's own must match."""
    mine, other = tmp_path / "app", tmp_path / "other"
    for d in (mine, other):
        d.mkdir()
        (d / "srv.py").write_text(SCRIPT)
    return str(mine), str(other)


def spec(command: tuple[str, ...], directory: str | None) -> ProgramSpec:
    return ProgramSpec(name="srv", program="srv", command=command, directory=directory)


def pids(command: tuple[str, ...], directory: str | None, mode: str) -> set[int]:
    return {m.pid for m in find_matches(spec(command, directory), mode)}


def test_cmdline_matches_the_script_in_the_programs_directory(
    procs: Procs, dirs: tuple[str, str]
) -> None:
    mine, other = dirs
    a = procs.start([sys.executable, "srv.py"], mine)
    b = procs.start([sys.executable, "srv.py"], other)  # same argv, other directory
    c = procs.start([sys.executable, os.path.join(mine, "srv.py")], "/")  # absolute script
    found = pids((sys.executable, "srv.py"), mine, "cmdline")
    assert a in found and c in found
    assert b not in found
    match = next(
        m for m in find_matches(spec((sys.executable, "srv.py"), mine), "cmdline") if m.pid == a
    )
    assert match.start_time == process_start_time(a)
    assert "cmdline matches" in match.reason
    assert match.cmdline == (sys.executable, "srv.py")


def test_cmdline_needs_the_same_arguments(procs: Procs, dirs: tuple[str, str]) -> None:
    mine, _ = dirs
    a = procs.start([sys.executable, "srv.py", "--port", "1"], mine)
    assert a not in pids((sys.executable, "srv.py", "--port", "2"), mine, "cmdline")
    assert a in pids((sys.executable, "srv.py", "--port", "1"), mine, "cmdline")


def test_cwd_matches_the_directory_and_name(procs: Procs, dirs: tuple[str, str]) -> None:
    mine, other = dirs
    a = procs.start([sys.executable, "srv.py"], mine)
    b = procs.start([sys.executable, "srv.py"], other)
    c = procs.start(["sleep", "120"], mine)  # right directory, another program
    found = find_matches(spec(("python3", "srv.py"), mine), "cwd")
    assert {m.pid for m in found} == {a}
    assert f"works in {os.path.realpath(mine)}" in found[0].reason
    assert b not in {m.pid for m in found} and c not in {m.pid for m in found}


def test_exe_matches_the_executable(procs: Procs, tmp_path: Path) -> None:
    own = tmp_path / "mysleep"
    shutil.copy("/bin/sleep", own)
    a = procs.start([str(own), "120"], str(tmp_path))
    b = procs.start(["/bin/sleep", "120"], str(tmp_path))  # unrelated: another binary
    found = find_matches(spec(("./mysleep", "1"), str(tmp_path)), "exe")
    assert [m.pid for m in found] == [a]
    assert str(own) in found[0].reason
    assert b not in pids(("./mysleep", "120"), str(tmp_path), "cmdline")
    assert a in pids(("./mysleep", "120"), str(tmp_path), "cmdline")


def test_exclude_pids_and_self(procs: Procs, dirs: tuple[str, str]) -> None:
    mine, _ = dirs
    a = procs.start([sys.executable, "srv.py"], mine)
    s = spec((sys.executable, "srv.py"), mine)
    assert a not in {m.pid for m in find_matches(s, "cmdline", exclude_pids={a})}
    me = spec(tuple(psutil.Process().cmdline()), os.getcwd())
    assert os.getpid() not in {m.pid for m in find_matches(me, "cmdline")}
    with pytest.raises(ValueError):
        find_matches(s, "lsof")


def test_zombies_are_skipped(dirs: tuple[str, str]) -> None:
    mine, _ = dirs
    p = subprocess.Popen(["sleep", "0"], cwd=mine)
    wait_until(lambda: psutil.Process(p.pid).status() == psutil.STATUS_ZOMBIE)
    try:
        assert p.pid not in pids(("sleep", "0"), mine, "cmdline")
        assert p.pid not in pids(("sleep", "0"), mine, "exe")
    finally:
        p.wait()


# ---- config ----------------------------------------------------------------------------------


def _config(tmp_path: Path, body: str) -> str:
    path = tmp_path / "tv.toml"
    path.write_text(f'[daemon]\nrun_dir = "{tmp_path}/run"\n{body}')
    return str(path)


def test_config_find_and_pidfile(tmp_path: Path) -> None:
    path = _config(
        tmp_path,
        '[program.a]\ncommand = "sleep 1"\ndirectory = "."\nfind = "cwd"\npidfile = "run/a.pid"\n'
        '[program.b]\ncommand = "sleep 1"\n',
    )
    by = load_config(path).by_name()
    assert by["a"].find == "cwd" and by["a"].pidfile == str(tmp_path / "run" / "a.pid")
    assert by["b"].find is None and by["b"].pidfile is None


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ('find = "cwdd"\ndirectory = "."', "did you mean 'cwd'?"),
        ('find = "proc_exe"', "expected one of 'cmdline', 'cwd', 'exe'"),
        ('find = "cwd"', "set the program's directory"),
        ("find = 1", "expected str"),
    ],
)
def test_config_find_problems(tmp_path: Path, body: str, message: str) -> None:
    path = _config(tmp_path, f'[program.a]\ncommand = "sleep 1"\n{body}\n')
    with pytest.raises(ConfigError) as e:
        load_config(path)
    assert message in str(e.value)
    assert "[program.a.find]" in str(e.value)


# ---- twinvisor find ------------------------------------------------------------------------------


def _cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twinvisor", *args], capture_output=True, text=True, timeout=60
    )


def test_find_command(procs: Procs, dirs: tuple[str, str], tmp_path: Path) -> None:
    mine, other = dirs
    a = procs.start([sys.executable, "srv.py"], mine)
    b = procs.start([sys.executable, "srv.py"], other)
    path = _config(
        tmp_path,
        f'[program.srv]\ncommand = ["{sys.executable}", "srv.py"]\ndirectory = "{mine}"\n'
        'find = "cwd"\n'
        '[program.none]\ncommand = "sleep 12345"\n',
    )
    r = _cli("-c", path, "find", "srv")
    assert r.returncode == 0, r
    assert f"pid {a}:" in r.stdout and f"pid {b}:" not in r.stdout
    assert "because works in" in r.stdout and "(find = 'cwd')" in r.stdout

    r = _cli("-c", path, "find", "srv", "--mode", "cmdline", "--json")
    assert r.returncode == 0, r
    data = json.loads(r.stdout)
    assert data["srv"]["mode"] == "cmdline"
    assert [m["pid"] for m in data["srv"]["matches"]] == [a]
    assert data["srv"]["matches"][0]["cmdline"] == [sys.executable, "srv.py"]

    r = _cli("-c", path, "find", "none")
    assert r.returncode == 1 and "no running process found" in r.stdout
    r = _cli("-c", path, "find", "nosuch")
    assert r.returncode == 2 and "no such program: nosuch" in r.stderr
