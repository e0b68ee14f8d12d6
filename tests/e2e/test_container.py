"""twinvisor as a container's init, in a real PID namespace (unshare, as root in CI): PID 1
reaps every orphan, SIGTERM stops every program gracefully (exit 0), an essential program's
exit stops everything with its code, a oneshot gates its dependents, console lines survive a
supervisor SIGKILL, health flips with readiness. The command is the example Dockerfile's."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import psutil
import pytest
import yaml

from tests.support.container import (
    EXAMPLE,
    Pid1,
    container_argv,
    dockerfile_command,
    dockerfile_env,
    needs_namespaces,
)
from tests.support.helpers import free_port, wait_until
from twinvisor.config.load import load_config
from twinvisor.core import deps


@pytest.fixture
def tmp() -> Iterator[Path]:
    with tempfile.TemporaryDirectory(prefix="tvc-", dir="/tmp") as d:  # short socket paths
        yield Path(d)


def write(tmp: Path, config: str, **scripts: str) -> Path:
    for name, text in scripts.items():
        (tmp / f"{name}.py").write_text(text)
    path = tmp / "twinvisor.toml"
    path.write_text(config)
    return path


def console(pid1: Pid1, name: str) -> list[str]:
    """`name`'s lines on the container's stdout, without the prefix."""
    out = []
    for line in list(pid1.out):
        head, sep, text = line.partition(" | ")
        if sep and head.strip() == name:
            out.append(text.rstrip("\n"))
    return out


def get(port: int, path: str) -> tuple[int, Any]:
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
            return r.status, json.loads(r.read())
    except urllib.error.HTTPError as e:
        return e.code, json.loads(e.read())


GRACEFUL = """
import signal, sys, time
def stop(*_):
    print("stopping gracefully", flush=True)
    sys.exit(0)
signal.signal(signal.SIGTERM, stop)
print("up", flush=True)
while True:
    time.sleep(60)
"""

# double forks: each orphan is re-parented to PID 1 of the namespace, which must reap it
FORKER = """
import os, signal, sys, time
signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
for _ in range(3):
    if os.fork() == 0:
        if os.fork() == 0:
            os.execvp("sleep", ["sleep", "1.5"])
        os._exit(0)
    os.wait()
print("forked", flush=True)
while True:
    time.sleep(60)
"""


# ---- the example files ---------------------------------------------------------------------


def test_dockerfile_and_manifest_agree_with_the_config() -> None:
    assert dockerfile_command() == ["twinvisor", "up", "--foreground"]  # what Pid1 runs
    dockerfile = (EXAMPLE / "Dockerfile").read_text()
    assert re.search(r"^FROM python:[\d.]+-slim$", dockerfile, re.M)
    env = dockerfile_env()
    config = load_config(str(EXAMPLE / env["TWINVISOR_CONFIG"].removeprefix("/app/")))
    assert config.daemon.http is not None and config.daemon.console == "text"
    port = int(config.daemon.http.listen.rsplit(":", 1)[1])
    manifest = yaml.safe_load((EXAMPLE / "deployment.yaml").read_text())
    pod = manifest["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    probes = {k: container[k]["httpGet"] for k in ("livenessProbe", "readinessProbe")}
    assert probes["livenessProbe"] == {"path": "/health?level=alive", "port": port}
    assert probes["readinessProbe"] == {"path": "/health?level=ready", "port": port}
    assert "lifecycle" not in container  # no preStop hook: SIGTERM is the graceful stop
    # the stop (dependents first, each level within its longest stop_timeout) fits the grace
    by_program = {p.program: p for p in config.programs}
    graph = {p.program: [d.program for d in p.depends_on] for p in config.programs}
    levels = deps.stop_levels(graph, graph)
    worst = sum(max(by_program[p].stop_timeout for p in level) for level in levels)
    assert worst + 5 <= pod["terminationGracePeriodSeconds"]
    # read-only root and non-root, with the run dir on the one writable volume
    assert container["securityContext"]["readOnlyRootFilesystem"] is True
    assert pod["securityContext"]["runAsNonRoot"] is True
    (mount,) = container["volumeMounts"]
    assert env["TWINVISOR_RUN_DIR"].startswith(mount["mountPath"] + "/")


# ---- PID 1 ---------------------------------------------------------------------------------


@needs_namespaces
def test_pid1_reaps_orphans_and_sigterm_stops_everything_gracefully(tmp: Path) -> None:
    config = write(
        tmp,
        "[daemon]\nconsole = true\n"
        '[program.forker]\ncommand = ["python", "forker.py"]\ndirectory = "."\n'
        '[program.app]\ncommand = ["python", "app.py"]\ndirectory = "."\n',
        forker=FORKER,
        app=GRACEFUL,
    )
    with Pid1(config, tmp / "run") as pid1:
        init = pid1.init()
        wait_until(lambda: console(pid1, "forker") == ["forked"], 30, "the forks")

        def orphans() -> list[int]:
            """Children of PID 1 other than the supervisor: the forker's grandchildren."""
            found = []
            for p in pid1.processes():
                try:
                    if p.ppid() == init.pid and "daemon" not in p.cmdline():
                        found.append(p.pid)
                except psutil.NoSuchProcess:
                    continue
            return found

        assert len(wait_until(orphans, 10, "orphans re-parented to PID 1")) == 3
        wait_until(lambda: not orphans() and not pid1.zombies(), 10, "orphans reaped")
        assert pid1.zombies() == []
        pid1.wait_state("app", "RUNNING")
        pid1.signal(signal.SIGTERM)
        assert pid1.wait(30) == 0
    assert console(pid1, "app") == ["up", "stopping gracefully"]
    assert pid1.processes() == []


@needs_namespaces
def test_an_essential_program_exiting_3_stops_everything_and_exits_3(tmp: Path) -> None:
    config = write(
        tmp,
        "[daemon]\nconsole = true\n"
        '[program.migrate]\ntype = "oneshot"\ncommand = ["python", "migrate.py"]\n'
        'directory = "."\n'
        '[program.web]\ncommand = ["python", "web.py"]\ndirectory = "."\n'
        'depends_on = ["migrate:completed"]\nessential = true\n'
        '[program.worker]\ncommand = ["python", "worker.py"]\ndirectory = "."\n',
        migrate="import time\nprint('migrating', flush=True)\ntime.sleep(0.5)\n"
        "print('migrated', flush=True)\n",
        # web starts only once migrate completed, then ends with 3 when told to
        web="import os, time\nprint('web starting', flush=True)\n"
        "while not os.path.exists('fail'):\n    time.sleep(0.02)\nraise SystemExit(3)\n",
        worker=GRACEFUL,
    )
    with Pid1(config, tmp / "run") as pid1:
        web = pid1.wait_state("web", "RUNNING")
        status = pid1.status()
        assert status["migrate"]["state"] == "EXITED" and status["migrate"]["completed"]
        assert "EXITED (completed)" in pid1.cli("status")
        assert web["pid"] is not None
        lines = [line.split(" | ", 1)[1].strip() for line in pid1.out if " | " in line]
        assert lines.index("migrated") < lines.index("web starting")  # the oneshot gate
        (tmp / "fail").write_text("")
        assert pid1.wait(30) == 3
    assert console(pid1, "worker") == ["up", "stopping gracefully"]
    events = [
        json.loads(line) for line in (tmp / "run" / "events.jsonl").read_text().split("\n")[:-1]
    ]
    (shutdown,) = [e for e in events if e["kind"] == "shutdown"]
    assert shutdown["instance"] == "web" and shutdown["exit_code"] == 3


@needs_namespaces
def test_a_oneshot_that_fails_is_reported_and_its_dependents_never_start(tmp: Path) -> None:
    config = write(
        tmp,
        '[program.migrate]\ntype = "oneshot"\ncommand = ["sh", "-c", "exit 5"]\n'
        "max_retry = 1\nbackoff_initial = 0.05\nessential = true\n"
        '[program.web]\ncommand = ["sleep", "60"]\ndepends_on = ["migrate:completed"]\n',
    )
    with Pid1(config, tmp / "run") as pid1:
        assert pid1.wait(30) == 5  # retried once, then FATAL: the container exits with 5
    text = (tmp / "run" / "log" / "twinvisor.log").read_text()
    assert "migrate: gave up after 2 consecutive failures" in text
    assert "web: spawned" not in text


# ---- console -------------------------------------------------------------------------------

FLOOD = """
import sys, time
name, count = sys.argv[1], int(sys.argv[2])
for i in range(count):
    sys.stdout.write(f"{i:06d} {name * 60}\\n")
    sys.stdout.flush()
    time.sleep(0.001)
print("end", flush=True)
time.sleep(600)
"""


def finished(pid1: Pid1, name: str) -> bool:
    return "end" in console(pid1, name)


@needs_namespaces
def test_console_lines_are_prefixed_whole_and_in_order_across_a_supervisor_kill(
    tmp: Path,
) -> None:
    count = 2500
    programs = "".join(
        f'[program.{n}]\ncommand = ["python", "flood.py", "{n}", "{count}"]\ndirectory = "."\n'
        f"stop_timeout = 1\n"
        for n in ("a", "bb")
    )
    config = write(tmp, "[daemon]\nconsole = true\n" + programs, flood=FLOOD)
    with Pid1(config, tmp / "run") as pid1:
        wait_until(lambda: len(console(pid1, "a")) > 300, 30, "output flowing")
        first = pid1.supervisor()
        first.kill()  # mid-stream
        wait_until(lambda: pid1.supervisor().pid != first.pid, 30, "a new supervisor")
        for n in ("a", "bb"):
            wait_until(functools.partial(finished, pid1, n), 60, f"{n} done")
        pid1.signal(signal.SIGTERM)
        assert pid1.wait(30) == 0
    for name in ("a", "bb"):
        assert all(
            line.startswith(f"{name.ljust(2)} | ") for line in pid1.out if line.startswith(name)
        )
        seen: list[int] = []
        for text in console(pid1, name)[:-1]:
            number, payload = text.split(" ")
            assert payload == name * 60, text  # never cut, never mixed with another's
            if int(number) not in seen:
                seen.append(int(number))
        # none lost, in order; a line written just before the kill may repeat (at least once)
        assert seen == list(range(count))
        assert len(console(pid1, name)) - 1 - count < 200


@needs_namespaces
def test_console_json_lines(tmp: Path) -> None:
    config = write(
        tmp,
        '[program.j]\ncommand = ["sh", "-c", "echo out; echo err >&2; printf tail"]\n'
        'console = "json"\nauto_restart = false\n',
    )
    with Pid1(config, tmp / "run") as pid1:
        pid1.wait_state("j", "EXITED")
        wait_until(lambda: any("tail" in line for line in pid1.out), 10, "the last line")
        pid1.signal(signal.SIGTERM)
        assert pid1.wait(30) == 0
    out = [json.loads(line) for line in pid1.out if line.startswith("{")]
    err = [json.loads(line) for line in pid1.err if line.startswith("{")]
    assert [(r["program"], r["stream"], r["line"]) for r in out] == [
        ("j", "stdout", "out"),
        ("j", "stdout", "tail"),  # an unfinished last line is still a line
    ]
    assert [(r["stream"], r["line"]) for r in err] == [("stderr", "err")]
    assert all(re.fullmatch(r"\d{4}-\d\d-\d\dT[\d:.]+Z", r["time"]) for r in out + err)


# ---- health --------------------------------------------------------------------------------

GATED = """
import os, socket, sys, time
port = int(sys.argv[1])
while not os.path.exists("go"):
    time.sleep(0.02)
s = socket.socket()
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("127.0.0.1", port))
s.listen()
while True:
    s.accept()[0].close()
"""


@needs_namespaces
def test_health_alive_and_ready_flip_as_a_program_becomes_ready_and_dies(tmp: Path) -> None:
    http, app = free_port(), free_port()
    config = write(
        tmp,
        f'[daemon.http]\nlisten = ":{http}"\n'
        f'[program.app]\ncommand = ["python", "gated.py", "{app}"]\ndirectory = "."\n'
        f'ready = "tcp://127.0.0.1:{app}"\nready_timeout = 60\n'
        '[program.side]\ncommand = ["sleep", "600"]\ngates_ready = false\nautostart = false\n',
        gated=GATED,
    )
    with Pid1(config, tmp / "run") as pid1:
        pid1.wait_state("app", "STARTING")
        assert get(http, "/health?level=alive") == (200, {"ok": True, "level": "alive"})
        assert get(http, "/health?level=ready") == (
            503,
            {"ok": False, "level": "ready", "not_ready": ["app"]},
        )
        (tmp / "go").write_text("")
        first = pid1.wait_state("app", "RUNNING")
        assert get(http, "/health?level=ready") == (
            200,
            {"ok": True, "level": "ready", "not_ready": []},
        )
        (tmp / "go").unlink()
        pid1.api("POST", "/programs/app/signal", {"signal": "KILL"})
        pid1.wait_state("app", "STARTING", "BACKOFF")
        wait_until(lambda: pid1.status()["app"]["pid"] != first["pid"], 10, "a new app")
        assert get(http, "/health?level=ready")[0] == 503
        assert get(http, "/health?level=alive")[0] == 200
        pid1.signal(signal.SIGTERM)
        assert pid1.wait(30) == 0


# ---- read-only root, non-root ----------------------------------------------------------------

READONLY = Path(__file__).resolve().parents[1] / "support" / "scripts" / "readonly_root.py"
UID = 12345  # no passwd entry, as OpenShift's random uids


def example_config(tmp: Path, web: int, http: int) -> Path:
    """The example's config as it is, but for free ports and the scripts' absolute directory."""
    text = (EXAMPLE / "twinvisor.toml").read_text()
    text = text.replace('directory = "."', f"directory = {json.dumps(str(EXAMPLE))}")
    text = text.replace("8000", str(web)).replace("0.0.0.0:9180", f"127.0.0.1:{http}")
    conf = tmp / "conf"
    conf.mkdir(mode=0o755)
    (conf / "twinvisor.toml").write_text(text)
    tmp.chmod(0o755)
    return conf / "twinvisor.toml"


@needs_namespaces
def test_the_example_runs_on_a_read_only_root_as_an_unknown_uid(tmp: Path) -> None:
    web, http = free_port(), free_port()
    config = example_config(tmp, web, http)
    writable = tmp / "writable"
    writable.mkdir()
    inside = [sys.executable, str(READONLY), str(writable), str(UID), "--"]
    with Pid1(config, writable / "twinvisor", inside=inside) as pid1:
        pid1.wait_state("web", "RUNNING")
        pid1.wait_state("worker", "RUNNING")  # both, before asking whether all are ready
        root = next(
            line.split()
            for line in Path(f"/proc/{pid1.init().pid}/mountinfo").read_text().splitlines()
            if line.split()[4] == "/"
        )
        assert "ro" in root[5].split(",")  # the namespace's / is read-only
        assert {p.uids().real for p in [pid1.init(), *pid1.processes()]} == {UID}
        assert get(http, "/health?level=ready") == (
            200,
            {"ok": True, "level": "ready", "not_ready": []},
        )  # migrate completed; web and worker ready
        with urllib.request.urlopen(f"http://127.0.0.1:{web}/", timeout=10) as r:
            assert r.read() == b"hello from twinvisor\n"
        wait_until(lambda: console(pid1, "worker")[:1] == ["tick 1"], 10, "the worker")
        pid1.signal(signal.SIGTERM)
        assert pid1.wait(30) == 0
    assert console(pid1, "migrate") == ["applying migrations", "migrations applied"]
    assert console(pid1, "web")[0] == f"listening on port {web}"


@needs_namespaces
def test_nothing_writable_is_a_clear_error_naming_the_path(tmp: Path) -> None:
    config = example_config(tmp, free_port(), free_port())
    writable = tmp / "writable"
    writable.mkdir()
    inside = [
        sys.executable,
        str(READONLY),
        str(writable),
        str(UID),
        "--",
        "env",
        "-u",
        "TWINVISOR_RUN_DIR",
    ]
    with Pid1(config, writable / "unused", inside=inside) as pid1:
        assert pid1.wait(30) == 1
    (message,) = pid1.err
    run_dir = config.parent / ".twinvisor"
    assert message.startswith(f"twinvisor: the run dir {run_dir}/twinvisor-")
    assert "Read-only file system" in message and "set TWINVISOR_RUN_DIR" in message


@needs_namespaces
def test_pid1_passes_hup_usr1_and_usr2_to_the_supervisor(tmp: Path) -> None:
    one = '[program.app]\ncommand = ["sleep", "600"]\n'
    config = write(tmp, one)
    with Pid1(config, tmp / "run") as pid1:
        pid1.wait_state("app", "RUNNING")
        log = tmp / "run" / "log" / "twinvisor.log"
        pid1.signal(signal.SIGUSR1)  # every program's state to the log
        wait_until(lambda: "status: app RUNNING" in log.read_text(), 10, "the status")
        pid1.signal(signal.SIGUSR2)  # reopen the log files
        wait_until(lambda: "log files reopened" in log.read_text(), 10, "the reopen")
        config.write_text(one + '[program.more]\ncommand = ["sleep", "600"]\n')
        pid1.signal(signal.SIGHUP)  # reload: the new program starts
        pid1.wait_state("more", "RUNNING")
        assert pid1.init().is_running()  # none of them ended PID 1
        pid1.signal(signal.SIGTERM)
        assert pid1.wait(30) == 0


# ---- the same, not as PID 1 ----------------------------------------------------------------


@pytest.mark.parametrize("twin", [True, False])
def test_not_pid1_the_guard_subreaps_and_the_exit_code_is_the_same(tmp: Path, twin: bool) -> None:
    """Outside a PID namespace (`docker run --init`, a plain shell) the guard is a child
    subreaper: the orphans are its own; --no-twin: the supervisor is, and exits itself."""
    config = write(
        tmp,
        "[daemon]\nconsole = true\n"
        '[program.forker]\ncommand = ["python", "forker.py"]\ndirectory = "."\n'
        '[program.main]\ncommand = ["python", "main.py"]\ndirectory = "."\nessential = true\n',
        forker=FORKER,
        main="import os, time\nwhile not os.path.exists('stop'):\n    time.sleep(0.02)\n"
        "raise SystemExit(7)\n",
    )
    env = dict(os.environ, TWINVISOR_CONFIG=str(config), TWINVISOR_RUN_DIR=str(tmp / "run"))
    env["PATH"] = f"{os.path.dirname(sys.executable)}:{env.get('PATH', '')}"
    argv = container_argv() + ([] if twin else ["--no-twin"])
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        me = psutil.Process(proc.pid)

        def grandchildren() -> list[int]:
            """The forker's orphans, now children of the subreaper we started."""
            return [p.pid for p in me.children() if _cmdline(p) == ["sleep", "1.5"]]

        wait_until(lambda: len(grandchildren()) == 3, 30, "orphans adopted by the subreaper")

        def zombies() -> list[int]:
            return [p.pid for p in me.children(recursive=True) if _zombie(p)]

        wait_until(lambda: not grandchildren() and not zombies(), 10, "orphans reaped")
        assert zombies() == []
        (tmp / "stop").write_text("")
        assert proc.wait(30) == 7
    finally:
        if proc.poll() is None:  # a failed test: a graceful down stops the programs too
            tree = psutil.Process(proc.pid).children(recursive=True)
            proc.terminate()
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                for p in [psutil.Process(proc.pid), *tree]:
                    with contextlib.suppress(psutil.NoSuchProcess):
                        p.kill()
                proc.wait()
        assert proc.stdout is not None
        out = proc.stdout.read().decode()
        proc.stdout.close()
    assert "forker | forked\n" in out


def _zombie(p: psutil.Process) -> bool:
    try:
        return bool(p.status() == psutil.STATUS_ZOMBIE)
    except psutil.NoSuchProcess:
        return False


def _cmdline(p: psutil.Process) -> list[str]:
    try:
        return list(p.cmdline())
    except psutil.NoSuchProcess:
        return []
