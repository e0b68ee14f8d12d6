"""`twinvisor` command line: argument parsing and rendering only.

Started often (status checks in scripts, health probes), so imports stay light: the config
loader and the daemon's modules are imported only by the verbs that need them.

Exit codes: 0 success; 1 the operation failed (a program did not start, a stop timed out);
2 usage or config error; 3 no daemon is running (LSB's "program is not running").
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from twinvisor import __version__
from twinvisor.cli import remote
from twinvisor.exitcodes import Exit

if TYPE_CHECKING:
    from twinvisor.config.specs import DaemonSpec

# the names the verbs use; the values have one home, exitcodes.Exit
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = (
    Exit.OK,
    Exit.FAILED,
    Exit.USAGE,
    Exit.NO_DAEMON,
)
READ_TIMEOUT = 10.0  # seconds a read (status, logs lookup) waits for the daemon


def _config_path(arg: str | None) -> str:
    """The one lookup order (config/lookup.py); none found is a usage error naming each try."""
    from twinvisor.config.lookup import ConfigNotFound, find_config

    try:
        return find_config(arg)
    except ConfigNotFound as e:
        raise _Fail(str(e), EXIT_USAGE) from None


class _Fail(Exception):
    def __init__(self, message: str, code: int, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.problems = problems  # a config's, one "file:line: [key] message" each (--json)


def _http_fail(code: int, body: Any) -> _Fail:
    """The daemon refused a request: 400 (bad signal, bad value) and 404 (no such program)
    are usage errors (exit 2), anything else a failed operation (exit 1)."""
    message = body.get("error", f"HTTP {code}") if isinstance(body, dict) else f"HTTP {code}"
    return _Fail(message, EXIT_USAGE if code in (400, 404) else EXIT_FAILED)


def _load_config(path: str) -> Any:
    from twinvisor.config.load import load_config
    from twinvisor.errors import ConfigError

    try:
        return load_config(path)
    except ConfigError as e:
        raise _Fail(f"{e}", EXIT_USAGE, [str(p) for p in e.problems]) from None
    except OSError as e:
        raise _Fail(f"cannot read config {path}: {e.strerror}", EXIT_USAGE) from None


def _socket_path(args: argparse.Namespace) -> str:
    """The control socket: --socket, $TWINVISOR_SOCKET, or the one the config names."""
    if args.socket:
        return str(args.socket)
    env = os.environ.get("TWINVISOR_SOCKET")
    if env:
        return env
    path = _config_path(args.config)
    # Only the [daemon] table is read: validating the whole config would cost most of a
    # `status` call, and a config being edited must not lock the operator out of a running
    # daemon (`status`, `down`, and `update`, which then reports the problems).
    from twinvisor.config.paths import (
        daemon_table_paths,  # tomllib: only when the socket is looked up
    )

    paths = daemon_table_paths(path)
    if paths is None:
        return str(_load_config(path).daemon.socket)  # raises with the config's problems
    return paths.socket


def _call(
    args: argparse.Namespace,
    method: str,
    path: str,
    body: Any = None,
    query: dict[str, str] | None = None,
) -> tuple[int, Any]:
    from twinvisor.control.client import ControlClient
    from twinvisor.errors import ControlError, DaemonNotRunning

    socket = _socket_path(args)
    # a read answers at once when a supervisor is there; the guard keeps the socket open
    # while it restarts one, so a read that waits longer means that restart is failing
    timeout = min(args.timeout, READ_TIMEOUT) if method == "GET" else args.timeout + 5
    try:
        code, answer = ControlClient(socket, timeout=timeout).call(method, path, body, query)
    except DaemonNotRunning as e:
        raise _Fail(_not_running(args, socket, e), EXIT_NOT_RUNNING) from None
    except ControlError as e:
        if method == "GET" and "timed out" in str(e).lower():
            log = os.path.join(os.path.dirname(socket), "log", "twinvisor.log")
            raise _Fail(
                f"the daemon at {socket} did not answer within {timeout:g}s: its supervisor "
                f"may be failing to restart; see {log}",
                EXIT_NOT_RUNNING,
            ) from None
        raise _Fail(str(e), EXIT_FAILED) from None
    if code == 403 or code >= 500:  # refused, or broken: no verb has anything else to show
        error = answer.get("error") if isinstance(answer, dict) else None
        raise _Fail(str(error or f"the daemon answered HTTP {code}"), EXIT_FAILED)
    return code, answer


# ---- rendering ---------------------------------------------------------------------------------


def _uptime(seconds: float | None) -> str:
    if seconds is None:
        return "-"
    s = int(seconds)
    days, s = divmod(s, 86400)
    h, s = divmod(s, 3600)
    m, s = divmod(s, 60)
    return (f"{days}d " if days else "") + f"{h}:{m:02d}:{s:02d}"


def _status_table(rows: list[dict[str, Any]]) -> str:
    header = ("NAME", "STATE", "PID", "UPTIME", "RESTARTS", "LAST EXIT / STATUS")
    lines = [header]
    for r in rows:
        lines.append(
            (
                r["name"],
                _state_text(r),
                str(r["pid"] or "-"),
                _uptime(r["uptime"]),
                str(r["restarts"]),
                _notes(r),
            )
        )
    widths = [max(len(line[i]) for line in lines) for i in range(len(header) - 1)]
    return "\n".join(
        "  ".join(col.ljust(w) for col, w in zip(line[:-1], widths, strict=True)) + "  " + line[-1]
        for line in lines
    )


def _state_text(r: dict[str, Any]) -> str:
    state = str(r["state"])
    if r.get("given_up") and state == "BACKOFF":
        return state + " (gave up, slow retry)"
    if r.get("completed"):
        return state + " (completed)"  # a oneshot that did its job
    if r.get("previous_pid"):
        return f"{state} (pid {r['previous_pid']} still serving)"  # a restart in progress
    if r.get("healthy") is False:
        return state + " (unhealthy)"
    return state


def _notes(r: dict[str, Any]) -> str:
    """Last exit, the last error, and the program's own sd_notify STATUS= text. Beside a
    live generation the last exit is the previous one's, and says so."""
    last = r.get("last_exit")
    if last and r.get("state") in ("STARTING", "RUNNING", "STOPPING"):
        last = f"previous run: {last}"
    parts = [p for p in (last, r.get("error")) if p]
    if r.get("status_text"):
        parts.append(f'"{r["status_text"]}"')
    return "; ".join(parts) or "-"


def _print_json(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True))


# ---- verbs ---------------------------------------------------------------------------------------


def cmd_status(args: argparse.Namespace) -> int:
    if getattr(args, "watch", False):
        code: int = _observe("watch")(args)
        return code
    query = {"names": ",".join(args.names)} if args.names else None
    code, body = _call(args, "GET", "/status", query=query)
    if code != 200:
        raise _http_fail(code, body)
    rows = body["programs"]
    if args.json:
        _print_json(rows)
    else:
        daemon = body.get("daemon") or {}
        if daemon.get("config"):  # which config this daemon runs (several may share a folder)
            print(f"config {daemon['config']} (supervisor pid {daemon.get('pid')})")
        print(_status_table(rows))
    problems = (body.get("daemon") or {}).get("config_problems") or []
    if problems:
        print(
            "twinvisor: the config file has errors; the daemon runs on the last applied config:",
            *(f"  {p}" for p in problems),
            sep="\n",
            file=sys.stderr,
        )
    # like `systemctl is-active`: non-zero when something is not running as asked
    bad = [r for r in rows if r["state"] in ("FATAL", "BACKOFF")]
    return EXIT_FAILED if bad else EXIT_OK


def cmd_verb(args: argparse.Namespace) -> int:
    query = {"timeout": str(args.timeout)}
    path = f"/programs/{','.join(args.names)}/{args.verb}"
    code, body = _call(args, "POST", path, query=query)
    if code == 404:
        raise _http_fail(code, body)
    if args.json:
        _print_json(body)
    else:
        by_name = {r["name"]: r for r in body.get("programs", [])}
        already = set(body.get("already", ()))
        for name, outcome in body.get("results", {}).items():
            row = by_name.get(name, {})
            detail = _outcome_text(args.verb, outcome, row, name in already)
            print(f"{name}: {detail}")
    return EXIT_OK if body.get("ok") else EXIT_FAILED


def _outcome_text(verb: str, outcome: str, row: dict[str, Any], already: bool = False) -> str:
    done = {"start": "started", "restart": "restarted", "stop": "stopped"}[verb]
    if outcome == "ok":
        if already:  # nothing was done: say so, not "started"
            done = "already running" if verb == "start" else "already stopped"
        return done + (f" (pid {row['pid']})" if row.get("pid") else "")
    why = row.get("error") or row.get("last_exit") or ""
    state = row.get("state", "?")
    if outcome == "timeout":
        return f"not {done} yet after the timeout (state {state})"
    return f"ERROR: not {done}: state {state}" + (f" ({why})" if why else "")


def cmd_signal(args: argparse.Namespace) -> int:
    path = f"/programs/{','.join(args.names)}/signal"
    code, body = _call(args, "POST", path, body={"signal": args.signal})
    if code in (400, 404):
        raise _http_fail(code, body)
    for name, sent in body.get("sent", {}).items():
        print(f"{name}: {'signalled' if sent else 'ERROR: not running'}")
    return EXIT_OK if body.get("ok") else EXIT_FAILED


def cmd_reread(args: argparse.Namespace) -> int:
    code, body = _call(args, "POST", "/reread")
    return _render_changes(args, code, body, applied=False)


def cmd_update(args: argparse.Namespace) -> int:
    code, body = _call(args, "POST", "/update", query={"timeout": str(args.timeout)})
    return _render_changes(args, code, body, applied=True)


def _render_changes(args: argparse.Namespace, code: int, body: Any, applied: bool) -> int:
    if code != 200:
        print(body.get("error", f"HTTP {code}"), file=sys.stderr)
        for problem in body.get("problems", []):
            print(f"  {problem}", file=sys.stderr)
        return EXIT_USAGE if code == 400 else EXIT_FAILED
    if args.json:
        _print_json(body)
        return EXIT_OK
    changes = body["changes"]
    words = ("added", "removed", "changed") if not applied else ("added", "removed", "updated")
    any_change = False
    for key, word in zip(("added", "removed", "changed"), words, strict=True):
        for name in changes[key]:
            any_change = True
            print(
                f"{name}: {word}"
                if applied
                else f"{name}: {'available' if key == 'added' else key}"
            )
    if not any_change:
        print("No config updates to processes")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    from twinvisor.linux import logs

    code, body = _call(args, "GET", "/status", query={"names": args.name})
    if code != 200:
        raise _http_fail(code, body)
    rows = body["programs"]
    if len(rows) != 1:
        raise _Fail(
            f"{args.name} names {len(rows)} instances; pick one of: "
            + ", ".join(r["name"] for r in rows),
            EXIT_USAGE,
        )
    path = rows[0]["stderr_file" if args.stderr else "stdout_file"]
    if not path:
        raise _Fail(
            f"{args.name}: {'stderr' if args.stderr else 'stdout'} is discarded (set in config)",
            EXIT_FAILED,
        )
    out = sys.stdout.buffer
    try:
        for line in logs.tail_lines(path, args.lines):
            out.write(line if line.endswith(b"\n") else line + b"\n")
        out.flush()
        if args.follow:
            from twinvisor.cli.output_watch import stop_when_closed

            for chunk in logs.follow(path, stop=stop_when_closed(out.fileno())):
                out.write(chunk)
                out.flush()
    except FileNotFoundError:
        raise _Fail(f"no log yet at {path}", EXIT_FAILED) from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def cmd_version(args: argparse.Namespace) -> int:
    print(f"twinvisor {__version__}")
    return EXIT_OK


def _not_running(args: argparse.Namespace, socket: str, error: Exception) -> str:
    """ "no daemon running", whether the socket file is missing or stale (both twins were
    killed): a stale one is removed, once no lock says a daemon or guard still runs."""
    from twinvisor.cli.liveness import clean_stale, not_running_text

    daemon = None if args.socket or os.environ.get("TWINVISOR_SOCKET") else _daemon_table(args)
    removed = clean_stale(daemon.run_dir, socket) if daemon is not None else []
    return not_running_text(socket, error, removed) + "\n(start it with: twinvisor up)"


def cmd_check_config(args: argparse.Namespace) -> int:
    """A table and warnings; the resolved config (and the warnings) with --json."""
    from twinvisor.cli import checkconfig
    from twinvisor.cli.liveness import daemon_running
    from twinvisor.config.load import config_to_dict

    config = _load_config(_config_path(args.config))
    warnings = checkconfig.warnings(config, daemon_running(config.daemon.run_dir))
    if args.json:
        _print_json({**config_to_dict(config), "warnings": warnings})
        return EXIT_OK
    print(checkconfig.table(config))
    print(f"config {config.path}: OK, {len(config.programs)} instance(s)")
    for warning in warnings:
        print(f"warning: {warning}")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    path = _config_path(args.config)
    config = _load_config(path)
    _require_writable(config.daemon)
    if args.foreground:
        _refuse_second_foreground(path)
        return _run_foreground(path, twin=not args.no_twin)
    from twinvisor.cli.launch import start_background

    sys.stdout = open(os.devnull, "w") if args.quiet else sys.stdout  # noqa: SIM115

    return start_background(config, timeout=args.timeout, twin=not args.no_twin)


def _require_writable(daemon: Any) -> None:
    """The run dir (lock, socket, state) and the log dir must be writable: on a read-only
    root (a container's readOnlyRootFilesystem) say which path and what to do about it."""
    from twinvisor.linux import fsutil

    for what, path in (("run dir", daemon.run_dir), ("log dir", daemon.log_dir)):
        try:
            if what == "run dir":
                fsutil.make_private_dir(path)
            else:
                os.makedirs(path, mode=0o750, exist_ok=True)
            probe = os.path.join(path, f".write-test-{os.getpid()}")
            os.close(os.open(probe, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600))
            os.unlink(probe)
        except OSError as e:
            raise _Fail(
                f"the {what} {path} is not writable ({e.strerror or e}); twinvisor needs one "
                "writable directory: set TWINVISOR_RUN_DIR to one (e.g. /tmp/twinvisor on an "
                "emptyDir or tmpfs volume) or [daemon] run_dir in the config",
                EXIT_FAILED,
            ) from None


def _refuse_second_foreground(path: str) -> None:
    """A foreground `up` must be the daemon (systemd, a container waits on it): with one
    already running for this config, say where, and fail (1) instead of exiting silently."""
    from twinvisor.cli.liveness import anything_running, pids_text
    from twinvisor.config.paths import daemon_table_paths

    paths = daemon_table_paths(path)
    if paths is None or not anything_running(paths.run_dir):
        return
    lines = [
        f"a daemon already runs for {os.path.abspath(path)}; not starting a second one",
        *pids_text(paths.run_dir),
        f"  control socket: {paths.socket}",
        f"stop it with `twinvisor -c {path} down`, or use it (`status`, `logs`)",
    ]
    raise _Fail("\n".join(lines), EXIT_FAILED)


def _run_foreground(path: str, twin: bool) -> int:
    """Containers and systemd: the guard (or, alone, the supervisor) stays in the foreground.
    As PID 1 of a container the guard is also the reaper every container needs."""
    if not twin:
        from twinvisor.service import process

        return process.run(path, foreground=True)
    from twinvisor.linux import fsutil
    from twinvisor.twin import guard

    config = _load_config(path)
    fsutil.remove_quietly(config.daemon.stop_marker)
    return guard.run_guard(path, None, foreground=True)


def cmd_down(args: argparse.Namespace) -> int:
    from twinvisor.cli.launch import stop_daemon

    return stop_daemon(_socket_path(args), timeout=args.timeout, daemon=_daemon_table(args))


def _daemon_table(args: argparse.Namespace) -> DaemonSpec | None:
    from twinvisor.config.paths import daemon_table_paths

    try:
        config = _config_path(args.config)
    except _Fail:
        if args.socket or os.environ.get("TWINVISOR_SOCKET"):
            return None  # `down --socket S` needs no config: the daemon is told by its socket
        raise
    return daemon_table_paths(config)


def cmd_upgrade(args: argparse.Namespace) -> int:
    from twinvisor.cli.launch import upgrade_daemon

    return upgrade_daemon(_socket_path(args), timeout=args.timeout)


def cmd_guard(args: argparse.Namespace) -> int:
    """Internal: the guard process of the twin."""
    from twinvisor.twin import guard

    return guard.run_guard(_config_path(args.config), args.watch)


def _tool(verb: str) -> Any:
    """A verb of tools.py (find, kill, timers, service, export, import), imported lazily."""

    def run(args: argparse.Namespace) -> int:
        from twinvisor.cli import tools

        return tools.run(verb, args)

    return run


def cmd_passwd(args: argparse.Namespace) -> int:
    from twinvisor.cli import passwd

    users_file = args.file
    if users_file is None:
        http = _load_config(_config_path(args.config)).daemon.http
        if http is None:
            raise _Fail("no [daemon.http] table in the config: name the file with --file", 2)
        users_file = http.users_file
    return passwd.cmd_passwd(args, users_file)


def _observe(verb: str) -> Any:
    """`events` and `status --watch` (cli/observe.py), imported lazily."""

    def run(args: argparse.Namespace) -> int:
        from twinvisor.cli import observe

        def call(method: str, path: str, query: dict[str, str] | None) -> tuple[int, Any]:
            return _call(args, method, path, query=query)

        if verb == "watch":
            return observe.cmd_watch(args, call)
        return observe.cmd_events(args, call)

    return run


def cmd_daemon(args: argparse.Namespace) -> int:
    """Internal: the background daemon process started by `up`."""
    from twinvisor.service import process

    return process.run(_config_path(args.config), foreground=False)


# ---- parser --------------------------------------------------------------------------------------


def _common_options(suppress: bool) -> argparse.ArgumentParser:
    """Options accepted before and after the verb. After it, defaults are suppressed so that
    `twinvisor -c X status` keeps the -c given before the verb."""
    from twinvisor.config.lookup import ORDER_TEXT  # os only: cheap, but not at import

    common = argparse.ArgumentParser(add_help=False)

    def d(value: Any) -> Any:
        return argparse.SUPPRESS if suppress else value

    common.add_argument(
        "-c",
        "--config",
        default=d(None),
        help=f"config file (looked up: {ORDER_TEXT})",
    )
    common.add_argument(
        "--socket", default=d(None), help="control socket (default: from the config)"
    )
    common.add_argument(
        "--json", action="store_true", default=d(False), help="machine-readable output"
    )
    common.add_argument(
        "--timeout", type=float, default=d(60.0), help="seconds to wait for an outcome"
    )
    return common


def build_parser() -> argparse.ArgumentParser:
    common = _common_options(suppress=True)
    p = argparse.ArgumentParser(
        prog="twinvisor",
        description="A process supervisor that survives its own death.",
        parents=[_common_options(suppress=False)],
    )
    remote.add_options(p)  # -H / --hosts: the command runs on other machines (cli/remote.py)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Any, help_text: str) -> argparse.ArgumentParser:
        sp = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        sp.set_defaults(func=func)
        return sp

    sp = add("up", cmd_up, "start the daemon and its autostart programs")
    sp.add_argument(
        "--foreground", action="store_true", help="stay in the foreground (containers, systemd)"
    )
    sp.add_argument("--quiet", action="store_true", help="print nothing when all is well")
    sp.add_argument(
        "--no-twin", action="store_true", help="run the supervisor alone, without its guard"
    )
    add("down", cmd_down, "stop every program and the daemon")
    add("upgrade", cmd_upgrade, "replace the running supervisor and guard by the installed code")
    sp = add("status", cmd_status, "show the state of programs")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument(
        "--watch", action="store_true", help="a live view, redrawn as events happen (Ctrl-C quits)"
    )
    sp = add("passwd", cmd_passwd, "add or change a dashboard user (a salted scrypt hash)")
    sp.add_argument("user", metavar="USER")
    sp.add_argument("--role", choices=("admin", "read"), default="admin")
    sp.add_argument("--file", help="the users file (default: [daemon.http] users_file)")
    sp.add_argument("--delete", action="store_true", help="remove the user")
    sp = add("events", _observe("events"), "print the daemon's events (state changes, exits, …)")
    sp.add_argument("names", nargs="*", metavar="NAME")
    sp.add_argument("-f", "--follow", action="store_true", help="wait for new events")
    sp.add_argument("--since", default="0", metavar="ID", help="only events after this id")
    for verb in ("start", "stop", "restart"):
        sp = add(
            verb, cmd_verb, f"{verb} programs (NAME, NAME:*, NAME:N or all); waits for the outcome"
        )
        sp.add_argument("names", nargs="+", metavar="NAME")
        sp.set_defaults(verb=verb)
    add("reread", cmd_reread, "show what changed in the config, without applying it")
    add("update", cmd_update, "apply the config: add, remove, restart what changed")
    sp = add("logs", cmd_logs, "print a program's log")
    sp.add_argument("name", metavar="NAME")
    sp.add_argument("-f", "--follow", action="store_true")
    sp.add_argument("-n", "--lines", type=int, default=20)
    sp.add_argument("--stderr", action="store_true", help="the stderr log instead of stdout")
    sp = add("signal", cmd_signal, "send a signal to programs")
    sp.add_argument("signal", metavar="SIG")
    sp.add_argument("names", nargs="+", metavar="NAME")
    add("version", cmd_version, "print the version")
    add("check-config", cmd_check_config, "validate the config and print it resolved")
    sp = add("find", _tool("find"), "find running copies of programs outside the daemon")
    sp.add_argument("names", nargs="+", metavar="NAME")
    sp.add_argument("--mode", choices=("cmdline", "cwd", "exe"), help="override `find`")
    sp = add("kill", _tool("kill"), "SIGKILL programs and wait for their restart")
    sp.add_argument("names", nargs="+", metavar="NAME")
    for verb, what in (("install-timer", "install"), ("uninstall-timer", "remove")):
        sp = add(verb, _tool(verb), f"{what} a timer running `twinvisor up` every minute")
        sp.add_argument("--print", action="store_true", help="show it, change nothing")
        kind = sp.add_mutually_exclusive_group()
        kind.add_argument("--systemd", dest="kind", action="store_const", const="systemd")
        kind.add_argument("--cron", dest="kind", action="store_const", const="cron")
    sp = add("install-service", _tool("install-service"), "install a systemd unit for the daemon")
    sp.add_argument("--user", action="store_true", help="a user unit (default when not root)")
    sp.add_argument("--print", action="store_true", help="show it, change nothing")
    sp = add("export", _tool("export"), "write a systemd unit per program into DIR")
    sp.add_argument("format", choices=("systemd",))
    sp.add_argument("directory", metavar="DIR")
    sp.add_argument("--prefix", default="", help="prefix of the unit names")
    sp = add("import", _tool("import"), "convert a supervisord.conf or a Procfile to TOML")
    sp.add_argument("source", metavar="FILE")
    sp.add_argument("-o", "--output", help="the TOML file to write (default: stdout)")
    sp.add_argument("--force", action="store_true", help="overwrite the output file")
    return p


def _internal_parser() -> argparse.ArgumentParser:
    """The processes `up` starts (guard, daemon): kept out of the public help."""
    p = argparse.ArgumentParser(prog="twinvisor", parents=[_common_options(suppress=False)])
    sub = p.add_subparsers(dest="command", required=True)
    sp = sub.add_parser("guard", parents=[_common_options(suppress=True)])
    sp.add_argument("--watch", type=int, default=None, metavar="PID")
    sp.set_defaults(func=cmd_guard)
    sp = sub.add_parser("daemon", parents=[_common_options(suppress=True)])
    sp.set_defaults(func=cmd_daemon)
    return p


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    internal = argv[:1] in (["guard"], ["daemon"])
    parser = _internal_parser() if internal else build_parser()
    args = parser.parse_args(argv)
    if not internal and remote.wanted(args):
        return remote.run(parser, args, argv)
    from twinvisor.cli import jsonout

    try:
        if jsonout.wrapped(args):  # --json: one JSON document on stdout, errors included
            return jsonout.run(args.func, args, _Fail)
        return int(args.func(args))
    except _Fail as e:
        print(f"twinvisor: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return EXIT_OK


if __name__ == "__main__":
    raise SystemExit(main())
