"""`twinvisor import` and `twinvisor export systemd` as commands: a daemon started on an
imported config runs its programs, exported units pass `systemd-analyze verify`."""

from __future__ import annotations

import shutil
import subprocess
import tomllib
from pathlib import Path

import psutil
import pytest

from tests.support.helpers import Daemon, daemon_fixture, gone  # noqa: F401
from tests.support.importdata import EXPORT_CONFIG, PY, supervisord_fixture, write  # noqa: F401
from tests.support.paths import CHILDREN
from twinvisor.cli.importers import import_file

SYSTEMD_ANALYZE = shutil.which("systemd-analyze")


def test_import_cli_writes_and_lists(tmp_path: Path, supervisord: Path) -> None:
    out = tmp_path / "out.toml"
    argv = [PY, "-m", "twinvisor", "import", str(supervisord), "-o", str(out)]
    r = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r
    assert "wrote" in r.stdout and "not carried over:" in r.stdout
    assert "[unix_http_server]: no meaning here" in r.stdout
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


def test_imported_config_runs(daemon: Daemon, supervisord: Path) -> None:
    """A daemon on an imported supervisord config runs its programs."""
    result = import_file(str(supervisord))
    daemon.write_raw(result.toml + f'\n[daemon]\nrun_dir = "{daemon.run_dir}"\n')
    r = daemon.cli("up")
    assert r.rc == 0, r
    for name in ("web", "worker_00", "worker_01", "extra", "cron-job"):
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
