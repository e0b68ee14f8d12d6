"""What every verb of the command line shares: exit codes, the config and socket lookup, the
typed call to the daemon, the failure that ends a verb, and JSON output.

Imported on every call, so it stays light: the config loader, the client and msgspec are
imported by the functions that need them.
"""

from __future__ import annotations

import os

from twinvisor.exitcodes import Exit

TYPE_CHECKING = False
if TYPE_CHECKING:  # annotations only: `status` runs without argparse (cli/quick.py)
    import argparse
    from collections.abc import Callable, Container
    from typing import TypeVar

    from twinvisor.cli.status_lines import StatusAnswer
    from twinvisor.config.specs import Config, DaemonSpec
    from twinvisor.control.client import ControlClient
    from twinvisor.control.messages import ErrorReply

    R = TypeVar("R")

# the names the verbs use; the values have one home, exitcodes.Exit
EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_NOT_RUNNING = (
    Exit.OK,
    Exit.FAILED,
    Exit.USAGE,
    Exit.NO_DAEMON,
)
READ_TIMEOUT = 10.0  # seconds a read (status, logs lookup) waits for the daemon


class Fail(Exception):
    """End the verb: main() prints the message and exits with ``code``."""

    def __init__(self, message: str, code: int, problems: list[str] | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.problems = problems  # a config's, one "file:line: [key] message" each (--json)


def reported(run: Callable[[], int]) -> int:
    """Run a verb as the command line ends one: a Fail prints its message and gives its exit
    code; a reader that went away (`| head`) is no error. Both ways in use it: app.main,
    and cli.main for the `status` read without argparse."""
    import sys

    try:
        return int(run())
    except Fail as e:
        print(f"twinvisor: {e}", file=sys.stderr)
        return e.code
    except BrokenPipeError:
        return EXIT_OK


class Refused(Fail):
    """The daemon answered with an error status: ``reply`` has its message and details."""

    def __init__(self, status: int, reply: ErrorReply) -> None:
        # 400 (a bad signal, a bad value) and 404 (no such program) are the caller's mistake
        code = EXIT_USAGE if status in (400, 404) else EXIT_FAILED
        super().__init__(reply.error, code, reply.problems or None)
        self.status = status
        self.reply = reply


def config_path(arg: str | None) -> str:
    """The one lookup order (config/lookup.py); none found is a usage error naming each try."""
    from twinvisor.config.lookup import ConfigNotFound, find_config

    try:
        return find_config(arg)
    except ConfigNotFound as e:
        raise Fail(str(e), EXIT_USAGE) from None


def load_config(path: str) -> Config:
    from twinvisor.config.load import load_config as load
    from twinvisor.errors import ConfigError

    try:
        return load(path)
    except ConfigError as e:
        raise Fail(f"{e}", EXIT_USAGE, [str(p) for p in e.problems]) from None
    except OSError as e:
        raise Fail(f"cannot read config {path}: {e.strerror}", EXIT_USAGE) from None


def socket_path(args: argparse.Namespace) -> str:
    """The control socket: --socket, $TWINVISOR_SOCKET, or the one the config names."""
    if args.socket:
        return str(args.socket)
    env = os.environ.get("TWINVISOR_SOCKET")
    if env:
        return env
    path = config_path(args.config)
    # Only the [daemon] table is read: validating the whole config would cost most of a
    # `status` call, and a config being edited must not lock the operator out of a running
    # daemon (`status`, `down`, and `update`, which then reports the problems).
    from twinvisor.config.paths import daemon_table_dirs  # plain strings: no msgspec here

    paths = daemon_table_dirs(path)
    if paths is None:
        return str(load_config(path).daemon.socket)  # raises with the config's problems
    return paths.socket


def request(
    args: argparse.Namespace,
    method: str,
    path: str,
    reply: type[R],
    *,
    body: object = None,
    query: dict[str, str] | None = None,
    accept: Container[int] = (200,),
) -> R:
    """Ask the daemon; its answer decoded into ``reply`` (a Struct of control.messages).

    An error answer (a status outside ``accept``: a 403 or a 5xx for every verb) raises
    Refused, a Fail that keeps the daemon's ErrorReply; an unreachable daemon or a broken
    answer raises Fail.
    """
    client, socket = _client(args, method)
    return _asking(
        args,
        method,
        socket,
        client.timeout,
        lambda: client.request(method, path, reply, body=body, query=query, accept=accept),
    )


def request_status(args: argparse.Namespace, query: dict[str, str] | None) -> StatusAnswer:
    """`GET /status` read without msgspec (cli/status_lines.py says why), failing as
    request() does."""
    from twinvisor.cli.status_lines import StatusAnswer

    client, socket = _client(args, "GET")
    return _asking(
        args,
        "GET",
        socket,
        client.timeout,
        lambda: StatusAnswer(client.fetch("GET", "/status", query=query)[1]),
    )


def _asking(
    args: argparse.Namespace, method: str, socket: str, timeout: float, ask: Callable[[], R]
) -> R:
    """``ask()``, with its failures as the CLI reports them: Refused for an error answer,
    Fail for a daemon that cannot be asked or answers nonsense."""
    from twinvisor.control.client import ApiError

    try:
        return ask()
    except ApiError as e:
        raise Refused(e.status, e.reply) from None
    except Exception as e:
        fail = _unreachable(e, args, method, socket, timeout)
        if fail is None:
            raise
        raise fail from None


def _client(args: argparse.Namespace, method: str) -> tuple[ControlClient, str]:
    from twinvisor.control.client import ControlClient

    socket = socket_path(args)
    # a read answers at once when a supervisor is there; the guard keeps the socket open
    # while it restarts one, so a read that waits longer means that restart is failing
    timeout = min(args.timeout, READ_TIMEOUT) if method == "GET" else args.timeout + 5
    return ControlClient(socket, timeout=timeout), socket


def _unreachable(
    e: Exception, args: argparse.Namespace, method: str, socket: str, timeout: float
) -> Fail | None:
    """The Fail for a daemon that could not be asked; None for other errors (not ours)."""
    from twinvisor.errors import ControlError, DaemonNotRunning

    if isinstance(e, DaemonNotRunning):
        return Fail(_not_running(args, socket, e), EXIT_NOT_RUNNING)
    if not isinstance(e, ControlError):
        return None
    if method == "GET" and "timed out" in str(e).lower():
        log = os.path.join(os.path.dirname(socket), "log", "twinvisor.log")
        return Fail(
            f"the daemon at {socket} did not answer within {timeout:g}s: its supervisor "
            f"may be failing to restart; see {log}",
            EXIT_NOT_RUNNING,
        )
    return Fail(str(e), EXIT_FAILED)


def print_json(data: object) -> None:
    """Pretty, sorted JSON of plain data or of Structs (which go through msgspec)."""
    import json  # here: its regexes are 2 ms of every CLI call that prints none

    print(json.dumps(data, indent=2, sort_keys=True, default=_builtins))


def _builtins(value: object) -> object:
    import msgspec

    return msgspec.to_builtins(value)


def _not_running(args: argparse.Namespace, socket: str, error: Exception) -> str:
    """ "no daemon running", whether the socket file is missing or stale (both twins were
    killed): a stale one is removed, once no lock says a daemon or guard still runs."""
    from twinvisor.cli.liveness import clean_stale, not_running_text

    daemon = None if args.socket or os.environ.get("TWINVISOR_SOCKET") else daemon_table(args)
    removed = clean_stale(daemon.run_dir, socket) if daemon is not None else []
    return not_running_text(socket, error, removed) + "\n(start it with: twinvisor up)"


def daemon_table(args: argparse.Namespace) -> DaemonSpec | None:
    """The config's [daemon] table alone (None without one); `--socket S` needs no config."""
    from twinvisor.config.paths import daemon_table_paths

    try:
        config = config_path(args.config)
    except Fail:
        if args.socket or os.environ.get("TWINVISOR_SOCKET"):
            return None  # `down --socket S` needs no config: the daemon is told by its socket
        raise
    return daemon_table_paths(config)
