"""The verbs of the command line that work around the daemon rather than through it:
`find`, `kill`, `install-timer`, `uninstall-timer`, `install-service`, `export`, `import`.

cli/app.py parses the arguments and calls `run(verb, args)` here, lazily, so these modules cost
nothing to the frequent verbs (`status`). Rendering only: the work is in discovery.py,
integrate.py, export_systemd.py and importers.py.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import msgspec

from twinvisor.cli.common import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    Fail,
    config_path,
    load_config,
    print_json,
    request,
)
from twinvisor.config.specs import Config, ProgramSpec, match_instances
from twinvisor.control.messages import (
    ProcessState,
    SignalReply,
    SignalRequest,
    StatusReply,
    StatusRow,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from twinvisor.linux.discovery import Match


def run(verb: str, args: argparse.Namespace) -> int:
    handlers = {
        "find": cmd_find,
        "kill": cmd_kill,
        "install-timer": cmd_install_timer,
        "uninstall-timer": cmd_uninstall_timer,
        "install-service": cmd_install_service,
        "export": cmd_export,
        "import": cmd_import,
    }
    from twinvisor.cli.integrate import IntegrationError

    try:
        return handlers[verb](args)
    except IntegrationError as e:
        raise Fail(str(e), EXIT_FAILED) from None


def select_instances(config: Config, patterns: list[str]) -> list[ProgramSpec]:
    """Instances named by NAME, NAME:N, NAME:* or all (as the daemon's API reads them)."""
    by_name = config.by_name()
    groups = {g.name: g.programs for g in config.groups}
    instances = [(p.name, p.program) for p in config.programs]
    names, unknown = match_instances(patterns, instances, groups)
    if unknown:
        from twinvisor.config.suggest import no_such_program

        known = list(dict.fromkeys([p.program for p in config.programs] + list(by_name)))
        known += list(groups)
        raise Fail(no_such_program(unknown, known), EXIT_USAGE)
    return [by_name[n] for n in names]


# ---- find ---------------------------------------------------------------------------------------


def cmd_find(args: argparse.Namespace) -> int:
    from twinvisor.linux.discovery import find_matches

    config = load_config(config_path(args.config))
    instances = select_instances(config, args.names)
    found: dict[str, tuple[str, list[Match]]] = {}  # instance: (find mode, processes)
    cache: dict[tuple[object, ...], list[Match]] = {}  # instances that look alike: one scan
    for spec in instances:
        mode = args.mode or spec.find or "cmdline"
        key = (spec.command, spec.directory, spec.environment, mode)
        if key not in cache:
            cache[key] = find_matches(spec, mode)
        found[spec.name] = (mode, cache[key])
    if args.json:
        print_json(
            {
                n: {"mode": mode, "matches": [m.to_dict() for m in ms]}
                for n, (mode, ms) in found.items()
            }
        )
    else:
        for name, (mode, matches) in found.items():
            _print_found(name, mode, matches)
    missing = {s.program for s in instances if not found[s.name][1]}
    return EXIT_FAILED if missing else EXIT_OK


def _print_found(name: str, mode: str, matches: list[Match]) -> None:
    if not matches:
        print(f"{name}: no running process found (find = {mode!r})")
        return
    many = "es" if len(matches) != 1 else ""
    print(f"{name}: {len(matches)} match{many} (find = {mode!r})")
    import shlex

    for m in matches:
        print(f"  pid {m.pid}: {shlex.join(m.cmdline)}")
        print(f"    because {m.reason}")


# ---- kill ---------------------------------------------------------------------------------------


def cmd_kill(args: argparse.Namespace) -> int:
    """SIGKILL programs through the daemon, then wait for the restart policy to bring each
    back: a new pid in RUNNING (seed 001's kill.sh)."""
    before = _status_rows(args, args.names)
    old = {r.name: r.pid for r in before}
    path = f"/programs/{','.join(args.names)}/signal"
    body = SignalRequest(signal="KILL")
    sent = request(args, "POST", path, SignalReply, body=body, accept=(200, 409)).sent
    rows = _wait_restarted(args, sent, old, {r.name: r for r in before})
    return _render_kill(args, sent, old, rows)


_GONE = (ProcessState.FATAL, ProcessState.STOPPED, ProcessState.EXITED)  # no coming back


def _wait_restarted(
    args: argparse.Namespace,
    sent: dict[str, bool],
    old: dict[str, int | None],
    rows: dict[str, StatusRow],
) -> dict[str, StatusRow]:
    """Follow the killed instances until each runs again as a new pid or cannot come back by
    itself (or --timeout passes); returns their last rows."""
    deadline = time.monotonic() + args.timeout
    waiting = {n for n, ok in sent.items() if ok}
    while waiting and time.monotonic() < deadline:
        for r in _status_rows(args, sorted(waiting)):
            rows[r.name] = r
            back = r.state is ProcessState.RUNNING and r.pid and r.pid != old.get(r.name)
            if back or r.state in _GONE:
                waiting.discard(r.name)
        if waiting:
            time.sleep(0.05)
    return rows


def _status_rows(args: argparse.Namespace, names: list[str]) -> list[StatusRow]:
    query = {"names": ",".join(names)}
    return request(args, "GET", "/status", StatusReply, query=query).programs


class _Killed(msgspec.Struct, frozen=True, kw_only=True):
    """One instance in the report of `kill` (its --json output)."""

    killed: bool
    old_pid: int | None
    new_pid: int | None  # running again as this pid
    state: ProcessState | None


def _render_kill(
    args: argparse.Namespace,
    sent: dict[str, bool],
    old: dict[str, int | None],
    rows: dict[str, StatusRow],
) -> int:
    report: dict[str, _Killed] = {}
    for name, was_sent in sent.items():
        row = rows.get(name)
        new_pid = row.pid if row and row.state is ProcessState.RUNNING else None
        back = bool(was_sent and new_pid and new_pid != old.get(name))
        state = row.state if row else None
        report[name] = _Killed(
            killed=was_sent, old_pid=old.get(name), new_pid=new_pid if back else None, state=state
        )
    if args.json:
        print_json(report)
    else:
        for name, r in report.items():
            print(f"{name}: {_kill_text(name, r)}")
    ok = all(r.new_pid for r in report.values())
    return EXIT_OK if ok else EXIT_FAILED


def _kill_text(name: str, r: _Killed) -> str:
    if not r.killed:
        return "ERROR: not running, nothing to kill"
    if r.new_pid:
        return f"killed pid {r.old_pid} -> restarted as pid {r.new_pid}"
    state = r.state.value if r.state else None
    return (
        f"killed pid {r.old_pid}; not running again (state {state}; see `twinvisor status {name}`)"
    )


# ---- timer and service --------------------------------------------------------------------------


def _twinvisor_argv() -> list[str]:
    from twinvisor.cli.integrate import twinvisor_command

    return twinvisor_command()


def cmd_install_timer(args: argparse.Namespace) -> int:
    from twinvisor.cli import integrate

    config = os.path.abspath(config_path(args.config))
    load_config(config)  # a timer for a config that does not load would fail every minute
    kind = integrate.timer_kind(args.kind)
    plan = integrate.timer_plan(kind, config, _twinvisor_argv())
    if args.print:
        print(plan.describe())
        return EXIT_OK
    print(integrate.install(plan))
    return EXIT_OK


def cmd_uninstall_timer(args: argparse.Namespace) -> int:
    from twinvisor.cli import integrate

    config = os.path.abspath(config_path(args.config))
    kind = integrate.timer_kind(args.kind)
    plan = integrate.timer_plan(kind, config, _twinvisor_argv())
    if args.print:
        print(plan.describe_removal())
        return EXIT_OK
    print(integrate.uninstall(plan))
    return EXIT_OK


def cmd_install_service(args: argparse.Namespace) -> int:
    from twinvisor.cli import integrate

    config = os.path.abspath(config_path(args.config))
    load_config(config)
    user = args.user or os.geteuid() != 0
    plan = integrate.service_plan(config, _twinvisor_argv(), user=user)
    if args.print:
        print(plan.describe())
        return EXIT_OK
    print(integrate.install(plan))
    return EXIT_OK


# ---- export and import --------------------------------------------------------------------------


def cmd_export(args: argparse.Namespace) -> int:
    from twinvisor.cli.export_systemd import export_units, write_units

    if args.format != "systemd":
        raise Fail(f"unknown export format {args.format!r}; expected 'systemd'", EXIT_USAGE)
    config = load_config(config_path(args.config))
    units, notes = export_units(config, prefix=args.prefix)
    written = write_units(units, args.directory)
    for path in written:
        print(f"wrote {path}")
    for note in notes:
        print(f"note: {note}", file=sys.stderr)
    return EXIT_OK


def cmd_import(args: argparse.Namespace) -> int:
    from twinvisor.cli.importers import ImportErrorText, import_file

    try:
        result = import_file(args.source, args.output)
    except ImportErrorText as e:
        raise Fail(str(e), EXIT_USAGE) from None
    except OSError as e:
        raise Fail(f"cannot read {args.source}: {e.strerror}", EXIT_USAGE) from None
    output = args.output or "-"
    if output == "-":
        sys.stdout.write(result.toml)
    else:
        if os.path.exists(output) and not args.force:
            raise Fail(f"{output} exists; use --force to overwrite it", EXIT_USAGE)
        from twinvisor.linux.fsutil import write_atomic

        if not write_atomic(os.path.abspath(output), result.toml):
            raise Fail(f"cannot write {output}", EXIT_FAILED)
        print(f"wrote {output}: {len(result.programs)} program(s): {', '.join(result.programs)}")
    out = sys.stderr if output == "-" else sys.stdout
    if result.dropped:
        print("not carried over:", file=out)
        for item in result.dropped:
            print(f"  {item}", file=out)
    return EXIT_OK
