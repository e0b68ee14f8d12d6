"""`twinvisor -H ssh://[user@]host[:port] COMMAND …` and `--hosts FILE`: any verb on other
machines, through the system `ssh` client, which runs the host's own `twinvisor` (why not a
forwarded control socket: see remote_hosts.ssh_argv).

Which twinvisor runs on the host: `--remote-command CMD` / `$TWINVISOR_REMOTE_COMMAND`
(default `twinvisor`, found on the PATH of a non-interactive ssh session), a shell command
the verb's arguments are appended to, quoted: `/opt/tv/bin/twinvisor`, `sudo -n twinvisor`.
A hosts-file line may name its own. Which ssh: `--ssh CMD` / `$TWINVISOR_SSH` (default
`ssh`), e.g. `ssh -F ./ssh_config -J bastion`: auth, keys, jump hosts and known_hosts stay
OpenSSH's.

Imported by every CLI call (for the options), so this module imports nothing heavy; the
work is in remote_hosts, remote_fleet, remote_outcome and remote_report.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

TYPE_CHECKING = False
if TYPE_CHECKING:  # remote_hosts is imported when a host is named
    from twinvisor.cli.remote_hosts import Target

_OURS = frozenset({"remote_hosts", "remote_hosts_file", "remote_command", "ssh_command",
                   "parallel"})  # fmt: skip


def add_options(parser: argparse.ArgumentParser) -> None:
    g = parser.add_argument_group("many machines (through ssh)")
    g.add_argument(
        "-H",
        "--host",
        action="append",
        dest="remote_hosts",
        metavar="HOST",
        help="run the command on HOST (ssh://[user@]host[:port], or an ssh alias) through "
        "ssh; repeat for several (default: $TWINVISOR_HOST, hosts separated by commas)",
    )
    g.add_argument(
        "--hosts",
        dest="remote_hosts_file",
        metavar="FILE",
        help="run the command on every host of FILE in parallel (a line: HOST [REMOTE-COMMAND])",
    )
    g.add_argument(
        "--remote-command",
        metavar="CMD",
        help="the twinvisor to run on the hosts, a shell command "
        "(default: $TWINVISOR_REMOTE_COMMAND, else twinvisor)",
    )
    g.add_argument(
        "--ssh",
        dest="ssh_command",
        metavar="CMD",
        help="the ssh client and its options, e.g. 'ssh -F cfg -J bastion' "
        "(default: $TWINVISOR_SSH, else ssh)",
    )
    g.add_argument(
        "--parallel",
        type=int,
        default=10,  # sshd's MaxStartups (10) drops more handshakes at once to one server
        metavar="N",
        help="hosts at a time (default 10)",
    )


def wanted(args: argparse.Namespace) -> bool:
    """The command goes to other hosts: -H, --hosts or $TWINVISOR_HOST."""
    return bool(
        getattr(args, "remote_hosts", None)
        or getattr(args, "remote_hosts_file", None)
        or os.environ.get("TWINVISOR_HOST", "").strip()
    )


def run(parser: argparse.ArgumentParser, args: argparse.Namespace, argv: Sequence[str]) -> int:
    import shlex

    from twinvisor.cli.remote_outcome import EXIT_USAGE

    try:
        targets = _targets(args)
        ssh = shlex.split(args.ssh_command or os.environ.get("TWINVISOR_SSH") or "ssh")
        if not ssh:
            raise ValueError("the ssh command is empty")
        if args.parallel < 1:
            raise ValueError("--parallel must be at least 1")
    except ValueError as e:
        print(f"twinvisor: {e}", file=sys.stderr)
        return EXIT_USAGE
    forward = forwarded_args(parser, argv)
    if len(targets) == 1 and not args.remote_hosts_file:
        return _one(ssh, targets[0], forward, args)
    return _many(ssh, targets, forward, args)


def _targets(args: argparse.Namespace) -> list[Target]:
    from twinvisor.cli.remote_hosts import DEFAULT_REMOTE_COMMAND, parse_host, read_hosts_file

    command = (
        args.remote_command
        or os.environ.get("TWINVISOR_REMOTE_COMMAND", "").strip()
        or DEFAULT_REMOTE_COMMAND
    )
    hosts = list(args.remote_hosts or [])
    if not hosts and not args.remote_hosts_file:
        hosts = [h for h in os.environ.get("TWINVISOR_HOST", "").split(",") if h.strip()]
    targets = [parse_host(h, command) for h in hosts]
    if args.remote_hosts_file:
        targets += read_hosts_file(args.remote_hosts_file, command)
    return targets


def forwarded_args(parser: argparse.ArgumentParser, argv: Sequence[str]) -> list[str]:
    """The command line minus our own options, which come before the verb (the parser has
    accepted `argv`, so each option's value is where the parser found it)."""
    table = parser._option_string_actions  # option string -> action, argparse's own map
    out: list[str] = []
    i = 0
    while i < len(argv):
        token = argv[i]
        if token == "--" or not token.startswith("-") or token == "-":
            out.extend(argv[i:])  # the verb and everything after it
            break
        if token.startswith("--"):
            name, eq, _ = token.partition("=")
            attached = bool(eq)
            name = _unabbreviated(name, table)
        else:
            name, attached = token[:2], len(token) > 2
        action = table.get(name)
        takes_value = action is not None and action.nargs != 0 and not attached
        chunk = argv[i : i + 1 + takes_value]
        if action is None or action.dest not in _OURS:
            out.extend(chunk)
        i += len(chunk)
    return out


def _unabbreviated(name: str, table: dict[str, argparse.Action]) -> str:
    """argparse takes a unique prefix of a long option (`--remote` for --remote-command)."""
    if name in table:
        return name
    matches = {a for opt, a in table.items() if opt.startswith("--") and opt.startswith(name)}
    if len(matches) == 1:
        action = matches.pop()
        return next(o for o in action.option_strings if o.startswith(name))
    return name


def _one(ssh: list[str], target: Target, forward: list[str], args: argparse.Namespace) -> int:
    """One host: its stdout is ours unchanged (pipes and `--json` work as on the host), its
    stderr is passed on as it comes and read for the reason if it fails."""
    import subprocess

    from twinvisor.cli.remote_hosts import ssh_argv
    from twinvisor.cli.remote_outcome import EXIT_FAILED, diagnose

    argv = ssh_argv(ssh, target, forward, batch=False)
    try:
        proc = subprocess.Popen(argv, stderr=subprocess.PIPE)
    except OSError as e:
        print(f"twinvisor: cannot run {argv[0]}: {e.strerror}", file=sys.stderr)
        return EXIT_FAILED
    said = bytearray()
    interrupted = False
    assert proc.stderr is not None
    with proc.stderr:
        try:
            for line in proc.stderr:
                sys.stderr.buffer.write(line)
                sys.stderr.buffer.flush()
                said += line
                del said[:-16384]  # the end says why; keep it bounded
        except KeyboardInterrupt:  # a Ctrl-C at the terminal reached ssh too, a kill -INT not
            interrupted = True
            proc.terminate()
    rc = proc.wait()
    if interrupted:
        return 0 if args.command == "logs" else 130
    outcome = diagnose(rc, bytes(said).decode("utf-8", "replace"), target.command)
    if outcome.reason is not None:
        print(f"twinvisor: {target.name}: {outcome.reason}", file=sys.stderr)
    return outcome.code


def _many(
    ssh: list[str], targets: list[Target], forward: list[str], args: argparse.Namespace
) -> int:
    """Every host in parallel: `status` merged into one table with a HOST column, `--json`
    merged into one document, anything else streamed line by line as `HOST  line`."""
    from twinvisor.cli import remote_report, render
    from twinvisor.cli.remote_fleet import HostRun, prefixer, run_all
    from twinvisor.cli.remote_hosts import ssh_argv
    from twinvisor.cli.remote_outcome import exit_code

    table = args.command == "status" and not args.json
    remote_args = ["--json", *forward] if table else forward
    runs = [HostRun(t, ssh_argv(ssh, t, remote_args, batch=True)) for t in targets]
    gather = table or args.json
    width = max(len(t.name) for t in targets)
    # a follow never ends by itself: every host has to run at once to be followed at all
    parallel = len(runs) if getattr(args, "follow", False) else args.parallel
    try:
        run_all(runs, parallel, None if gather else prefixer(width))
    except KeyboardInterrupt:
        return 0 if args.command == "logs" else 130
    if table:
        text = remote_report.status_table(runs, render.status_table)
        if text is not None:
            print(text)
    elif args.json:
        print(remote_report.json_document(runs))
    sys.stdout.flush()
    remote_report.report_failures(runs, quiet_details=not gather)
    return exit_code([remote_report.outcome(r) for r in runs])
