"""Events, metrics and hooks on the real daemon: the journal through a kill / restart / ready /
takeover sequence and resumed across a supervisor SIGKILL with none missing; /metrics parsed by
prometheus_client's own parser; a hook fired on an unexpected exit, a slow hook not delaying the
restart."""

from __future__ import annotations

import json
import os
import signal
import socket
import sys
from pathlib import Path
from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from tests.support.helpers import (  # noqa: F401
    Daemon,
    child,
    daemon_fixture,
    read_report,
    wait_report,
    wait_until,
)
from twinvisor.control.client import ControlClient


def events(daemon: Daemon, after: int = 0, wait: float = 0) -> list[dict[str, Any]]:
    code, body = daemon.api("GET", "/events", query={"after": str(after), "wait": str(wait)})
    assert code == 200, body
    found: list[dict[str, Any]] = body["events"]
    return found


def supervisor_answering(daemon: Daemon) -> int:
    code, body = ControlClient(daemon.socket, timeout=20).call("GET", "/version")
    assert code == 200, body
    return int(body["pid"])


def kill_supervisor(daemon: Daemon) -> None:
    old = supervisor_answering(daemon)
    os.kill(old, signal.SIGKILL)
    wait_until(lambda: supervisor_answering(daemon) != old, 20, "a new supervisor answering")


def test_events_in_order_and_resumable_across_a_takeover(daemon: Daemon) -> None:
    daemon.up({"app": {"command": child("run")}})
    first = daemon.wait_state("app", "RUNNING")["pid"]
    os.kill(first, signal.SIGKILL)
    second = daemon.wait_state("app", "RUNNING", where=lambda r: r["pid"] != first)["pid"]
    assert daemon.cli("restart", "app").rc == 0
    third = daemon.wait_state("app", "RUNNING", where=lambda r: r["pid"] != second)["pid"]
    seen = events(daemon)
    mark = seen[-1]["id"]
    kill_supervisor(daemon)
    os.kill(third, signal.SIGKILL)  # while the new supervisor watches: its events follow
    daemon.wait_state("app", "RUNNING", where=lambda r: r["pid"] != third)
    later = events(daemon, after=mark)
    everything = events(daemon)
    ids = [e["id"] for e in everything]
    assert ids == list(range(1, len(ids) + 1)), "ids are contiguous and increasing"
    assert [e["id"] for e in later] == ids[ids.index(mark) + 1 :], "resumed with none missing"
    story = [(e["kind"], e.get("pid"), e.get("reason") or e.get("state")) for e in everything]
    expected = [
        ("ready", first, None),
        ("exit", first, None),
        ("restart", None, "exit"),
        ("ready", second, None),
        ("restart", None, "manual"),
        ("ready", third, None),
        ("takeover", None, None),
        ("exit", third, None),
        ("restart", None, "exit"),
    ]
    kinds = [
        (k, p if k != "takeover" else None, r if k == "restart" else None) for k, p, r in story
    ]
    it = iter(kinds)
    assert all(step in it for step in expected), story  # in this order, others between
    killed = next(e for e in everything if e["kind"] == "exit" and e["pid"] == first)
    assert killed["signal"] == "SIGKILL" and killed["expected"] is False
    r = daemon.cli("events", "--json", "--since", str(mark))
    assert r.rc == 0, r
    assert [json.loads(line)["id"] for line in r.out.splitlines()] == [e["id"] for e in later]


def get_text(socket_path: str, target: str) -> tuple[str, str]:
    """A plain HTTP/1.1 GET over the unix socket, as curl --unix-socket does: (head, body)."""
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as s:
        s.settimeout(10)
        s.connect(socket_path)
        s.sendall(f"GET {target} HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".encode())
        data = b""
        while chunk := s.recv(65536):
            data += chunk
    head, _, body = data.partition(b"\r\n\r\n")
    return head.decode(), body.decode()


def metric_families(daemon: Daemon) -> dict[str, Any]:
    head, text = get_text(daemon.socket, "/metrics")
    assert head.startswith("HTTP/1.1 200") and "text/plain; version=0.0.4" in head, head
    return {f.name: f for f in text_string_to_metric_families(text)}


def sample(families: dict[str, Any], name: str, **labels: str) -> float | None:
    family = families[name.removesuffix("_total")]
    for s in family.samples:
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items()):
            return float(s.value)
    return None


def test_metrics_parse_with_the_right_types_and_restarts_count(daemon: Daemon) -> None:
    daemon.up(
        {"app": {"command": child("run")}, "off": {"command": child("run"), "autostart": False}}
    )
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    families = metric_families(daemon)
    types = {name: f.type for name, f in families.items()}
    assert types["twinvisor_program_up"] == "gauge"
    assert types["twinvisor_program_state"] == "gauge"
    assert types["twinvisor_program_cpu_seconds"] == "counter"
    assert types["twinvisor_program_resident_memory_bytes"] == "gauge"
    assert types["twinvisor_api_requests"] == "counter"
    assert sample(families, "twinvisor_program_up", instance="app") == 1
    assert sample(families, "twinvisor_program_up", instance="off") == 0
    assert sample(families, "twinvisor_program_state", instance="app", state="RUNNING") == 1
    assert sample(families, "twinvisor_program_state", instance="off", state="STOPPED") == 1
    rss = sample(families, "twinvisor_program_resident_memory_bytes", instance="app")
    assert rss is not None and rss > 1024 * 1024
    assert sample(families, "twinvisor_program_restarts_total", instance="app", reason="exit") == 0
    os.kill(pid, signal.SIGKILL)
    daemon.wait_state("app", "RUNNING", where=lambda r: r["pid"] != pid)
    after = metric_families(daemon)
    restarts = sample(after, "twinvisor_program_restarts_total", instance="app", reason="exit")
    assert restarts == 1
    assert sample(after, "twinvisor_program_last_exit_code", instance="app") == -signal.SIGKILL
    status_calls = sample(after, "twinvisor_api_requests_total", route="/status", code="200")
    assert status_calls is not None and status_calls >= 2


def test_metrics_follow_state_changes_and_removed_programs(daemon: Daemon) -> None:
    # a scrape reuses what it rendered for an instance before: it must still follow the state,
    # and forget instances an update removed
    programs: dict[str, dict[str, Any]] = {
        "app": {"command": child("run")},
        "gone": {"command": child("run")},
    }
    daemon.up(programs)
    daemon.wait_state("gone", "RUNNING")
    before = metric_families(daemon)
    assert sample(before, "twinvisor_program_state", instance="app", state="RUNNING") == 1
    assert sample(before, "twinvisor_program_up", instance="gone") == 1
    assert daemon.cli("stop", "app").rc == 0
    del programs["gone"]
    daemon.write_config(programs)
    assert daemon.cli("update").rc == 0
    after = metric_families(daemon)
    assert sample(after, "twinvisor_program_state", instance="app", state="RUNNING") == 0
    assert sample(after, "twinvisor_program_state", instance="app", state="STOPPED") == 1
    assert sample(after, "twinvisor_program_up", instance="app") == 0
    assert sample(after, "twinvisor_program_up", instance="gone") is None
    assert sample(after, "twinvisor_program_restarts_total", instance="gone", reason="exit") is None


HOOK = (
    "import json, os, sys, time\n"
    "event = json.loads(sys.stdin.read())\n"
    "out = sys.argv[1]\n"
    "line = json.dumps({'pid': os.getpid(), 'event': event,"
    " 'env_kind': os.environ['TWINVISOR_EVENT_KIND']}) + '\\n'\n"
    "fd = os.open(out, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)\n"
    "os.write(fd, line.encode())\n"
    "time.sleep(float(sys.argv[2]))\n"
)


def test_hook_on_unexpected_exit_and_a_slow_hook_does_not_delay_the_restart(
    daemon: Daemon,
) -> None:
    script = Path(daemon.path("hook.py"))
    script.write_text(HOOK)
    fired, slow = daemon.path("fired.jsonl"), daemon.path("slow.jsonl")
    hooks = (
        f"[hooks.mail]\ncommand = {json.dumps([sys.executable, str(script), fired, '0'])}\n"
        'on = ["unexpected_exit"]\nprograms = ["app"]\n\n'
        f"[hooks.slow]\ncommand = {json.dumps([sys.executable, str(script), slow, '300'])}\n"
        'on = ["exit"]\ntimeout = 600\n'
    )
    daemon.write_config({"app": {"command": child("run")}})
    Path(daemon.config).write_text(Path(daemon.config).read_text() + "\n" + hooks)
    r = daemon.cli("up")
    assert r.rc == 0, r
    pid = daemon.wait_state("app", "RUNNING")["pid"]
    os.kill(pid, signal.SIGKILL)
    (mail,) = wait_report(fired, lambda e: len(e) >= 1)
    assert mail["env_kind"] == "exit"
    event = mail["event"]
    assert (event["kind"], event["instance"], event["pid"]) == ("exit", "app", pid)
    assert event["signal"] == "SIGKILL" and event["expected"] is False
    (sleeper,) = wait_report(slow, lambda e: len(e) >= 1)  # the slow hook runs (300 s) ...
    daemon.wait_state("app", "RUNNING", where=lambda r: r["pid"] != pid)  # ... and yet
    assert Path(f"/proc/{sleeper['pid']}").exists(), "the slow hook is still running"
    # an expected exit (a stop) fires the exit hook but not the unexpected_exit one
    assert daemon.cli("stop", "app").rc == 0
    wait_report(slow, lambda e: len(e) >= 2)
    assert len(read_report(fired)) == 1
