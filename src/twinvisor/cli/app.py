"""`twinvisor` command line: argument parsing and rendering only.

Started often (status checks in scripts, health probes), so imports stay light: the config
loader and the daemon's modules are imported only by the verbs that need them.

Exit codes: 0 success; 1 the operation failed (a program did not start, a stop timed out);
2 usage or config error; 3 no daemon is running (LSB's "program is not running").
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable, Sequence

from twinvisor import __version__
from twinvisor.cli import remote
from twinvisor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Fail,
    Refused,
    config_path,
    daemon_table,
    load_config,
    print_json,
    reported,
    request,
    request_status,
    socket_path,
)
from twinvisor.cli.parser_base import ArgumentParser, Partial
from twinvisor.cli.render import outcome_text
from twinvisor.cli.status_verb import cmd_status

TYPE_CHECKING = False
if TYPE_CHECKING:  # the structs come with msgspec: imported by the verbs that talk to the daemon
    from twinvisor.config.specs import Config, DaemonSpec
    from twinvisor.control.messages import ChangesReply, UpdateReply

Command = Callable[[argparse.Namespace], int]  # a verb: its parsed arguments in, exit code out

# ---- verbs ---------------------------------------------------------------------------------------


def cmd_verb(args: argparse.Namespace) -> int:
    from twinvisor.control.messages import VerbReply

    query = {"timeout": str(args.timeout)}
    path = f"/programs/{','.join(args.names)}/{args.verb}"
    reply = request(args, "POST", path, VerbReply, query=query, accept=(200, 409))
    if args.json:
        print_json(reply)
    else:
        by_name = {r.name: r for r in reply.programs}
        already = set(reply.already)
        for name, outcome in reply.results.items():
            text = outcome_text(args.verb, outcome, by_name.get(name), name in already)
            print(f"{name}: {text}")
    return EXIT_OK if reply.ok else EXIT_FAILED


def cmd_signal(args: argparse.Namespace) -> int:
    from twinvisor.control.messages import SignalReply, SignalRequest

    path = f"/programs/{','.join(args.names)}/signal"
    body = SignalRequest(signal=args.signal)
    reply = request(args, "POST", path, SignalReply, body=body, accept=(200, 409))
    for name, sent in reply.sent.items():
        print(f"{name}: {'signalled' if sent else 'ERROR: not running'}")
    return EXIT_OK if reply.ok else EXIT_FAILED


def cmd_reread(args: argparse.Namespace) -> int:
    from twinvisor.control.messages import ChangesReply

    try:
        reply = request(args, "POST", "/reread", ChangesReply)
    except Refused as e:
        return _refused(e)
    return _render_changes(args, reply, applied=False)


def cmd_update(args: argparse.Namespace) -> int:
    from twinvisor.control.messages import UpdateReply

    query = {"timeout": str(args.timeout)}
    try:
        reply = request(args, "POST", "/update", UpdateReply, query=query)
    except Refused as e:
        return _refused(e)
    return _render_changes(args, reply, applied=True)


def _refused(e: Refused) -> int:
    """A config the daemon would not take: its message and every problem, on stderr."""
    if e.status == 403 or e.status >= 500:  # refused, or broken: not about the config
        raise e
    print(e.reply.error, file=sys.stderr)
    for problem in e.reply.problems:
        print(f"  {problem}", file=sys.stderr)
    return EXIT_USAGE if e.status == 400 else EXIT_FAILED


def _render_changes(
    args: argparse.Namespace, reply: ChangesReply | UpdateReply, applied: bool
) -> int:
    if args.json:
        print_json(reply)
        return EXIT_OK
    changes = reply.changes
    lines = [f"{n}: {'added' if applied else 'available'}" for n in changes.added]
    lines += [f"{n}: removed" for n in changes.removed]
    lines += [f"{n}: {'updated' if applied else 'changed'}" for n in changes.changed]
    print("\n".join(lines) if lines else "No config updates to processes")
    return EXIT_OK


def cmd_logs(args: argparse.Namespace) -> int:
    path = _log_path(args)
    from twinvisor.linux import logs

    out = sys.stdout.buffer
    written = os.path.lexists(path)  # a log file is created by the program's first output
    if not written:
        print(f"twinvisor: {args.name} has written nothing yet to {path}", file=sys.stderr)
    try:
        for line in logs.tail_lines(path, args.lines) if written else []:
            out.write(line if line.endswith(b"\n") else line + b"\n")
        out.flush()
        if args.follow:
            from twinvisor.cli.output_watch import stop_when_closed

            for chunk in logs.follow(path, stop=stop_when_closed(out.fileno())):
                out.write(chunk)
                out.flush()
    except FileNotFoundError:
        raise Fail(f"no log yet at {path}", EXIT_FAILED) from None
    except KeyboardInterrupt:
        pass
    return EXIT_OK


def _log_path(args: argparse.Namespace) -> str:
    """The log file of the one instance `args.name` names, as the daemon reports it."""
    rows = request_status(args, {"names": args.name}).programs
    if len(rows) != 1:
        raise Fail(
            f"{args.name} names {len(rows)} instances; pick one of: "
            + ", ".join(r.name for r in rows),
            EXIT_USAGE,
        )
    row = rows[0]
    path = row.stderr_file if args.stderr else row.stdout_file
    console = row.stderr_console if args.stderr else row.stdout_console
    if args.stderr and row.redirect_stderr:
        raise Fail(
            f"{args.name}: stderr goes into stdout (redirect_stderr): see `logs`", EXIT_FAILED
        )
    if console:
        raise Fail(
            f"{args.name}: output goes to the daemon's own {console} (the terminal or container "
            "log of `up --foreground`), not to a file",
            EXIT_FAILED,
        )
    if not path:
        raise Fail(
            f"{args.name}: {'stderr' if args.stderr else 'stdout'} is discarded (set in config)",
            EXIT_FAILED,
        )
    return path


def cmd_version(args: argparse.Namespace) -> int:
    print(f"twinvisor {__version__}")
    return EXIT_OK


def cmd_check_config(args: argparse.Namespace) -> int:
    """A table and warnings; the resolved config (and the warnings) with --json."""
    from twinvisor.cli import checkconfig
    from twinvisor.cli.liveness import daemon_running
    from twinvisor.config.applied import config_to_dict

    config = load_config(config_path(args.config))
    warnings = checkconfig.warnings(config, daemon_running(config.daemon.run_dir))
    if args.json:
        print_json({**config_to_dict(config), "warnings": warnings})
        return EXIT_OK
    print(checkconfig.table(config))
    print(f"config {config.path}: OK, {len(config.programs)} instance(s)")
    for warning in warnings:
        print(f"warning: {warning}")
    return EXIT_OK


def cmd_up(args: argparse.Namespace) -> int:
    path = config_path(args.config)
    if args.foreground:
        config = load_config(path)
        _require_writable(config.daemon)
        _refuse_second_foreground(path)
        return _run_foreground(config, twin=not args.no_twin)
    # Only the [daemon] table here: the supervisor validates the whole file anyway, and this
    # call waits for its word (config errors come back as they would from here, exit 2).
    # Loading 1000 programs twice, one after the other, was a tenth of their start.
    from twinvisor.config.paths import daemon_table_paths

    daemon = daemon_table_paths(path) or load_config(path).daemon  # (unreadable: says why)
    _require_writable(daemon)
    from twinvisor.cli.launch import start_background

    sys.stdout = open(os.devnull, "w") if args.quiet else sys.stdout  # noqa: SIM115

    return start_background(path, daemon, timeout=args.timeout, twin=not args.no_twin)


def _require_writable(daemon: DaemonSpec) -> None:
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
            raise Fail(
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
    raise Fail("\n".join(lines), EXIT_FAILED)


def _run_foreground(config: Config, twin: bool) -> int:
    """Containers and systemd: the guard (or, alone, the supervisor) stays in the foreground.
    As PID 1 of a container the guard is also the reaper every container needs."""
    path = config.path
    if not twin:
        from twinvisor.service import entry

        return entry.run(path, foreground=True)  # (loads it again: the supervisor's own)
    from twinvisor.linux import fsutil
    from twinvisor.twin import guard, protocol

    fsutil.remove_quietly(config.daemon.stop_marker)
    from twinvisor.cli.launch import prepare_bytecode

    prepare_bytecode()  # before the exec: the guard then starts the supervisor with -OO
    # This guard stays for the container's whole life (often as its PID 1): exec its own
    # light entry, in this same process, rather than run it here, where the CLI's imports
    # (argparse, the config loader, msgspec) would stay in its memory for good.
    d = config.daemon
    env = dict(os.environ, **protocol.daemon_paths_env(d.run_dir, d.log_dir, d.socket))
    argv = protocol.command("guard", path, "--foreground")
    sys.stdout.flush()
    sys.stderr.flush()
    import contextlib

    with contextlib.suppress(OSError):  # (no interpreter at sys.executable?)
        os.execve(argv[0], argv, env)
    return guard.run_guard(path, None, foreground=True)  # then the guard runs here


def cmd_down(args: argparse.Namespace) -> int:
    from twinvisor.cli.launch import stop_daemon

    return stop_daemon(socket_path(args), timeout=args.timeout, daemon=daemon_table(args))


def cmd_upgrade(args: argparse.Namespace) -> int:
    from twinvisor.cli.launch import upgrade_daemon

    return upgrade_daemon(socket_path(args), timeout=args.timeout)


def cmd_guard(args: argparse.Namespace) -> int:
    """Internal: the guard process of the twin."""
    from twinvisor.twin import guard

    return guard.run_guard(config_path(args.config), args.watch)


def _tool(verb: str) -> Command:
    """A verb of tools.py (find, kill, timers, service, export, import), imported lazily."""

    def run(args: argparse.Namespace) -> int:
        from twinvisor.cli import tools

        return tools.run(verb, args)

    return run


def cmd_passwd(args: argparse.Namespace) -> int:
    from twinvisor.cli import passwd

    users_file = args.file
    if users_file is None:
        http = load_config(config_path(args.config)).daemon.http
        if http is None:
            raise Fail("no [daemon.http] table in the config: name the file with --file", 2)
        users_file = http.users_file
    return passwd.cmd_passwd(args, users_file)


def _observe(verb: str) -> Command:
    """`events` and `status --watch` (cli/observe.py), imported lazily."""

    def run(args: argparse.Namespace) -> int:
        from twinvisor.cli import observe

        return observe.cmd_watch(args) if verb == "watch" else observe.cmd_events(args)

    return run


def cmd_daemon(args: argparse.Namespace) -> int:
    """Internal: the background daemon process started by `up`."""
    from twinvisor.service import entry

    return entry.run(config_path(args.config), foreground=False)


# ---- parser --------------------------------------------------------------------------------------


def _common_options(suppress: bool) -> ArgumentParser:
    """Options accepted before and after the verb. After it, defaults are suppressed so that
    `twinvisor -c X status` keeps the -c given before the verb."""
    from twinvisor.config.lookup import ORDER_TEXT  # os only: cheap, but not at import

    common = ArgumentParser(add_help=False)

    def d(value: object) -> object:
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


class _Unused:
    """Stands for the sub-parser of a verb that is not on the command line: its arguments are
    never parsed, and building all 25 sub-parsers costs a `status` call about 10 ms."""

    def __getattr__(self, name: str) -> Callable[..., _Unused]:
        return lambda *args, **kwargs: self


def _asks_for_help(argv: set[str]) -> bool:
    return any(a == "-h" or (len(a) >= 3 and "--help".startswith(a)) for a in argv)


def _verb_names() -> list[str]:
    names: list[str] = []

    def note(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        names.append(name)
        return _Unused()  # type: ignore[return-value]

    for verbs in (_daemon_verbs, _program_verbs, _tool_verbs):
        verbs(note)
    return names


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The parser; given argv, only the verbs named in it get their arguments. The others get
    their name and help line where that can show: for `--help`, and for "invalid choice" when
    argv names no verb. With a verb named, they are left out (2.5 ms of a `status` call)."""
    wanted = None if argv is None else set(argv)
    lean = (
        wanted is not None and not _asks_for_help(wanted) and not wanted.isdisjoint(_verb_names())
    )
    common = _common_options(suppress=True)
    p = ArgumentParser(
        prog="twinvisor",
        description="A process supervisor that survives its own death.",
        parents=[_common_options(suppress=False)],
    )
    p.partial = lean
    remote.add_options(p)  # -H / --hosts: the command runs on other machines (cli/remote.py)
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name: str, func: Command, help_text: str) -> argparse.ArgumentParser:
        if wanted is not None and name not in wanted:
            if not lean:
                sub.add_parser(name, help=help_text, add_help=False)
            return _Unused()  # type: ignore[return-value]  # (typing.cast: an import)
        sp = sub.add_parser(name, parents=[common], help=help_text, description=help_text)
        sp.set_defaults(func=func)
        return sp

    _daemon_verbs(add)  # in the order `--help` lists them
    _program_verbs(add)
    _tool_verbs(add)
    return p


# a verb's sub-parser: name, function, help text
Add = Callable[[str, Command, str], argparse.ArgumentParser]


def _daemon_verbs(add: Add) -> None:
    """The daemon as a whole: up, down, upgrade, status, passwd, events."""
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


def _program_verbs(add: Add) -> None:
    """Programs through the daemon, and the config: start ... check-config."""
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


def _tool_verbs(add: Add) -> None:
    """Around the daemon rather than through it (tools.py)."""
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


def _internal_parser() -> argparse.ArgumentParser:
    """The processes `up` starts (guard, daemon): kept out of the public help."""
    p = ArgumentParser(prog="twinvisor", parents=[_common_options(suppress=False)])
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
    parser = _internal_parser() if internal else build_parser(argv)
    try:
        args = parser.parse_args(argv)
    except Partial:  # the whole parser says what is wrong (and exits 2)
        parser = build_parser()
        args = parser.parse_args(argv)
    if not internal and remote.wanted(args):
        return remote.run(parser, args, argv)
    from twinvisor.cli import jsonout

    if jsonout.wrapped(args):  # --json: one JSON document on stdout, errors included
        return reported(lambda: jsonout.run(args.func, args, Fail))
    return reported(lambda: args.func(args))


if __name__ == "__main__":
    raise SystemExit(main())
