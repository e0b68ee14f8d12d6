"""The run dir's files are untrusted and may be lost: whatever happened to `state.json`, a
new supervisor finds the programs a killed pair left (by their tag, whoever their parent is
now) and adopts them; never a second copy (issue 10, items 1 and 4)."""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.support.faults import Subreaper, kill_both, parent_of, program_processes
from tests.support.helpers import (
    Daemon,
    child,
    daemon_fixture,  # noqa: F401
    wait_report,
)


def _rewrite(path: Path, change: Callable[[dict[str, Any]], None]) -> None:
    data = json.loads(path.read_text())
    change(data)
    path.write_text(json.dumps(data))


def _clean(data: dict[str, Any]) -> None:
    data["clean_shutdown"] = True


def _wrong_version(data: dict[str, Any]) -> None:
    data["version"] = 99


def _make_a_directory(p: Path) -> None:
    p.unlink()
    p.mkdir()
    (p / "x").write_text("x")


DAMAGE: dict[str, Callable[[Path], object]] = {
    "empty": lambda p: p.write_bytes(b""),
    "truncated": lambda p: p.write_bytes(p.read_bytes()[: len(p.read_bytes()) // 2]),
    "corrupt": lambda p: p.write_bytes(b"\xff\xfe{not json\x00"),
    "deleted": lambda p: p.unlink(),
    "directory": _make_a_directory,
    "garbage-20mb": lambda p: p.write_bytes(os.urandom(1 << 20) * 20),
    "wrong-version": lambda p: _rewrite(p, _wrong_version),
    "wrong-types": lambda p: p.write_text(
        '{"version": 1, "desired": [1], "children": {"a": 1}, "clean_shutdown": "no"}'
    ),
    "clean-shutdown": lambda p: _rewrite(p, _clean),
    "nested-100k": lambda p: p.write_text("[" * 100_000 + "]" * 100_000),
    "pid-1e400": lambda p: p.write_text(
        p.read_text().replace('"children":[[', '"children":[["x",1e400,1,1],[', 1)
    ),
}


def _programs(report: str) -> dict[str, dict[str, Any]]:
    return {
        "a": {"command": child("run")},
        "b": {"command": child("run"), "numprocs": 2},
        # a program with descendants, one in a session of its own: they are not generations
        "t": {"command": child("tree", "--report", report)},
    }


NAMES = ("a", "b:0", "b:1", "t")


def _kept_aside(daemon: Daemon) -> int:
    """Bad state files moved aside: corrupt content, or not a regular file at all."""
    run = Path(daemon.run_dir)
    return len([*run.glob("state.json.corrupt-*"), *run.glob("state.json.bad-*")])


def _sorted(found: dict[str, list[int]]) -> dict[str, list[int]]:
    return {n: sorted(p) for n, p in found.items()}


GROUPS = {
    "lost": ["empty", "truncated", "deleted", "directory"],
    "garbage": ["corrupt", "garbage-20mb", "nested-100k", "pid-1e400"],
    "lies": ["wrong-version", "wrong-types", "clean-shutdown"],
}


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_state_file_damage_never_gives_a_second_copy(daemon: Daemon, group: str) -> None:
    """One pair after another killed outright, the state file damaged in another way each
    time: every new supervisor adopts the same processes."""
    report = daemon.path("report")
    daemon.write_config(_programs(report))
    with Subreaper(daemon, *daemon.cli_argv(), "up", "--quiet") as catcher:
        assert catcher.rc() == 0
        pids = {n: daemon.wait_state(n, "RUNNING")["pid"] for n in NAMES}
        wait_report(report, lambda ev: len([e for e in ev if e["event"] == "ready"]) == 3)
        processes = _sorted(program_processes(daemon))
        assert len(processes["t"]) == 3
        for damage in GROUPS[group]:
            kill_both(daemon)
            # the scenario of the field report: orphans reparented to a subreaper, not PID 1
            assert {parent_of(pids[n]) for n in NAMES} == {catcher.proc.pid}, damage
            state = Path(daemon.run_dir, "state.json")
            kept = _kept_aside(daemon)
            DAMAGE[damage](state)
            r = daemon.cli("up")
            assert r.rc == 0, (damage, r)
            status = daemon.status()
            # adopted, not started again
            assert {n: status[n]["pid"] for n in NAMES} == pids, damage
            assert {n: status[n]["state"] for n in NAMES} == dict.fromkeys(NAMES, "RUNNING")
            assert _sorted(program_processes(daemon)) == processes, damage
            assert "Traceback" not in Path(daemon.log_dir, "twinvisor.log").read_text()
            if damage not in ("deleted", "clean-shutdown"):  # kept for a post-mortem
                assert _kept_aside(daemon) == kept + 1, (damage, os.listdir(daemon.run_dir))
        assert daemon.cli("down").rc == 0
        assert program_processes(daemon) == {}
