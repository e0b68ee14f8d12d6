"""The optional TCP listener ([daemon.http]): health probes for Kubernetes and load balancers,
metrics for a real Prometheus server, nothing else without a credential, and no probe refused
while a supervisor is replaced."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest

from tests.support.helpers import (  # noqa: F401
    Daemon,
    child,
    daemon_fixture,
    free_port,
    wait_until,
)
from twinvisor.control.client import ControlClient


def get(port: int, path: str, method: str = "GET") -> tuple[int, Any]:
    req = urllib.request.Request(f"http://127.0.0.1:{port}{path}", method=method)
    try:
        with urllib.request.urlopen(req, timeout=10) as r:
            body = r.read()
            status = r.status
    except urllib.error.HTTPError as e:
        body, status = e.read(), e.code
    text = body.decode()
    return status, json.loads(text) if text.startswith("{") else text


def listener(port: int, open_metrics: bool = False) -> str:
    return f'[daemon.http]\nlisten = ":{port}"\nopen_metrics = {str(open_metrics).lower()}\n'


def test_health_flips_with_readiness_and_nothing_else_is_served(daemon: Daemon) -> None:
    port = free_port()
    crashing = {"command": ["false"], "autostart": False, "max_retry": 1}
    daemon.up({"app": {"command": child("run")}, "flaky": crashing}, daemon_extra=listener(port))
    daemon.wait_state("app", "RUNNING")
    assert get(port, "/health?level=alive") == (200, {"ok": True, "level": "alive"})
    assert get(port, "/health?level=ready") == (
        200,
        {"ok": True, "level": "ready", "not_ready": []},
    )  # flaky is not autostart: not waited for
    daemon.api("POST", "/programs/flaky/start", query={"timeout": "0.1"})
    daemon.wait_state("flaky", "FATAL")
    assert get(port, "/health?level=ready") == (
        503,
        {"ok": False, "level": "ready", "not_ready": ["flaky"]},
    )
    daemon.api("POST", "/programs/flaky/stop")
    assert get(port, "/health?level=ready")[0] == 200, "stopped by the user: not waited for"
    daemon.api("POST", "/programs/app/stop")
    assert get(port, "/health?level=ready")[0] == 200
    daemon.api("POST", "/programs/app/start")
    assert get(port, "/health?level=ready")[0] == 200
    assert get(port, "/health?level=bogus")[0] == 400
    # no control verb, no status, no metrics (not open) on TCP
    assert get(port, "/programs/app/stop", "POST")[0] == 404
    assert get(port, "/status")[0] == 404
    assert get(port, "/metrics")[0] == 404
    assert daemon.status()["app"]["state"] == "RUNNING"


def test_no_probe_refused_across_a_supervisor_kill(daemon: Daemon) -> None:
    port = free_port()
    daemon.up({"app": {"command": child("run")}}, daemon_extra=listener(port))
    old = ControlClient(daemon.socket).call("GET", "/version")[1]["pid"]
    os.kill(old, signal.SIGKILL)
    # the guard holds the listening socket: the probe waits for the new supervisor
    assert get(port, "/health?level=alive")[0] == 200
    new = ControlClient(daemon.socket).call("GET", "/version")[1]["pid"]
    assert new != old


@pytest.fixture
def prometheus_bin() -> str:
    found = shutil.which("prometheus")
    assert found, "prometheus is not installed (.ci/run installs Debian's package)"
    return found


@pytest.fixture
def prometheus_dir() -> Iterator[str]:
    d = tempfile.mkdtemp(prefix="tvprom", dir="/tmp")
    try:
        yield d
    finally:
        shutil.rmtree(d, ignore_errors=True)


def test_a_real_prometheus_scrapes_and_answers_promql(
    daemon: Daemon, prometheus_bin: str, prometheus_dir: str
) -> None:
    port, prom_port = free_port(), free_port()
    daemon.up({"app": {"command": child("run")}}, daemon_extra=listener(port, open_metrics=True))
    daemon.wait_state("app", "RUNNING")
    config = os.path.join(prometheus_dir, "prometheus.yml")
    with open(config, "w") as f:
        f.write(
            "global:\n  scrape_interval: 1s\n  scrape_timeout: 1s\n"
            "scrape_configs:\n  - job_name: twinvisor\n    honor_labels: true\n"
            f"    static_configs:\n      - targets: ['127.0.0.1:{port}']\n"
        )
    prom = subprocess.Popen(
        [
            prometheus_bin,
            f"--config.file={config}",
            f"--storage.tsdb.path={prometheus_dir}/data",
            f"--web.listen-address=127.0.0.1:{prom_port}",
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
    )
    try:

        def answer() -> list[Any] | None:
            try:
                status, body = get(prom_port, "/api/v1/query?query=twinvisor_program_up")
            except OSError:
                return None  # not listening yet
            result = body["data"]["result"] if status == 200 else []
            return result or None

        result = wait_until(answer, 60, "Prometheus to have scraped twinvisor")
        (series,) = result
        assert series["metric"]["program"] == "app" and series["metric"]["instance"] == "app"
        assert series["value"][1] == "1"
    finally:
        prom.terminate()
        prom.wait(30)
