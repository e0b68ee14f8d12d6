"""The supervisor reads its config in a child process (issue 16): supervisor/configload.py runs
config/child.py and decodes its answer. The same Config as an in-process load, the same
problems (file:line:key) for a file with errors, and a ConfigError that says what happened for
a loader that dies, hangs or answers nonsense. The daemon's own modules never load the
parser. Real child processes throughout."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from tests.support.helpers import config_text
from twinvisor.config.load import load_config as load_here
from twinvisor.errors import ConfigError
from twinvisor.supervisor import configload


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "twinvisor.toml"
    path.write_text(text)
    return str(path)


def test_the_child_loads_the_same_config_as_an_in_process_load(tmp_path: Path) -> None:
    (tmp_path / "env").write_text("GREETING=hello\n")
    programs: dict[str, dict[str, Any]] = {
        "web": {"command": ["sleep", "infinity"], "numprocs": 2, "env_file": "env"},
        "worker": {"command": ["sleep", "1"], "depends_on": ["web"], "stop_signal": "INT"},
    }
    path = _write(tmp_path, config_text(str(tmp_path / "run"), programs))
    assert configload.load_config(path) == load_here(path)
    assert asyncio.run(configload.load_config_async(path)) == load_here(path)


def test_a_config_with_errors_gives_the_same_problems(tmp_path: Path) -> None:
    text = config_text(str(tmp_path / "run"), {"web": {"command": ["x"], "max_retry": "many"}})
    path = _write(tmp_path, text + "\n[program.other]\nbogus = 1\n")
    with pytest.raises(ConfigError) as here:
        load_here(path)
    with pytest.raises(ConfigError) as child:
        configload.load_config(path)
    assert child.value.problems == here.value.problems
    assert len(child.value.problems) >= 2
    with pytest.raises(ConfigError) as later:
        asyncio.run(configload.load_config_async(path))
    assert later.value.problems == here.value.problems


@pytest.mark.parametrize(
    ("script", "said"),
    [
        ("import sys; sys.stderr.write('Traceback\\nKeyError: x\\n'); sys.exit(1)", "KeyError: x"),
        ("print('not json')", "exit status 0"),
        ("print('{\"config\": 5}')", "exit status 0"),
        ("print('{\"problems\": [[1, 2]]}')", "exit status 0"),
    ],
)
def test_a_loader_that_dies_or_answers_nonsense_is_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, script: str, said: str
) -> None:
    monkeypatch.setattr(configload, "_argv", lambda path: [sys.executable, "-c", script])
    path = str(tmp_path / "twinvisor.toml")
    for load in (configload.load_config, lambda p: asyncio.run(configload.load_config_async(p))):
        with pytest.raises(ConfigError) as e:
            load(path)
        (problem,) = e.value.problems
        assert problem.file == path and "the config loader failed" in problem.message
        assert said in problem.message


def test_a_loader_that_hangs_is_stopped_and_reported(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(configload, "TIMEOUT", 0.5)
    monkeypatch.setattr(configload, "_argv", lambda path: ["sleep", "60"])
    path = str(tmp_path / "twinvisor.toml")
    with pytest.raises(ConfigError, match="took longer than"):
        configload.load_config(path)
    with pytest.raises(ConfigError, match="took longer than"):
        asyncio.run(configload.load_config_async(path))


def test_the_daemons_modules_never_load_the_config_parser() -> None:
    probe = (
        "import sys\n"
        "from twinvisor.service import entry\n"
        "entry._import_asyncio(tls=False)\n"
        "assert 'ssl' not in sys.modules, 'asyncio was imported before entry could keep ssl out'\n"
        "from twinvisor.service import process\n"
        "from twinvisor.control import routes, dashboard\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] == 'tomllib' or m in (\n"
        "    'twinvisor.config.load', 'twinvisor.config.values', 'twinvisor.config.locate')]\n"
        "print(heavy)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True
    ).stdout
    assert out.strip() == "[]"
