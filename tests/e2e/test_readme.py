"""The README's "First five minutes" block, run as written: the walk-through cannot rot.

The block is taken from README.md itself (the first ```sh fence under the heading) and run by
bash with `twinvisor` on PATH, in the test's own temporary folder ($TMPDIR for its mktemp).
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

from tests.support.helpers import Daemon, daemon_fixture  # noqa: F401
from tests.support.paths import ROOT

HEADING = "## First five minutes"


def walkthrough() -> str:
    text = Path(ROOT, "README.md").read_text()
    section = text[text.index(HEADING) :]
    match = re.search(r"```sh\n(.*?)```", section, re.S)
    assert match, "no ```sh block under the heading"
    return match.group(1)


def test_the_block_is_a_walkthrough() -> None:
    verbs = {
        line.split()[1] for line in walkthrough().splitlines() if line.startswith("twinvisor ")
    }
    assert {"check-config", "up", "status", "logs", "restart", "start", "down"} <= verbs


def test_readme_first_five_minutes_runs_as_written(daemon: Daemon) -> None:
    bin_dir = os.path.dirname(sys.executable)  # the venv's: twinvisor and python3
    env = {**daemon.env, "PATH": f"{bin_dir}:{os.environ['PATH']}", "TMPDIR": daemon.root}
    script = "set -euo pipefail\n" + walkthrough()
    try:
        p = subprocess.run(
            ["bash", "-c", script],
            env=env,
            cwd=daemon.root,
            capture_output=True,
            text=True,
            timeout=120,
            stdin=subprocess.DEVNULL,
        )
    finally:  # a block that failed half-way must not leave its daemon behind
        for folder in Path(daemon.root).iterdir():
            if (folder / "twinvisor.toml").exists():
                down = [sys.executable, "-m", "twinvisor", "-c", str(folder / "twinvisor.toml")]
                subprocess.run([*down, "down"], env=env, capture_output=True, timeout=60)
    out = p.stdout + p.stderr
    assert p.returncode == 0, out
    for expected in (
        "PROGRAM",  # check-config's table
        "supervisor pid",
        "guard pid",
        "RUNNING",
        "hello: restarted (pid",
        "hello: already running (pid",
        "did you mean 'hello'?",
        "exit 2",
        "twinvisor down",
        "no daemon running",
        "exit 3",
    ):
        assert expected in out, (expected, out)
    assert re.search(r"^hello$", p.stdout, re.M), p.stdout  # the log line
