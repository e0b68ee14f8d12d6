"""Frozen records describing what the user asked for, after the config is resolved.

Everything downstream (core, runtime, children) consumes these and never the raw TOML,
so a config change is a comparison of two `ProgramSpec` values.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from enum import Enum


class AutoRestart(Enum):
    ALWAYS = "always"  # restart whatever the exit status (supergo's auto_restart = true)
    UNEXPECTED = "unexpected"  # restart unless the exit code is in exit_codes
    NEVER = "never"


class AfterGiveUp(Enum):
    FATAL = "fatal"  # stay FATAL until the user starts it again
    SLOW_RETRY = "slow_retry"  # keep retrying every `slow_retry_interval` seconds


@dataclass(frozen=True)
class RestartPolicy:
    auto_restart: AutoRestart = AutoRestart.ALWAYS
    # consecutive failed runs (exit before min_uptime, or spawn error) before giving up
    max_retry: int = 3
    min_uptime: float = 1.0
    backoff_initial: float = 0.1
    backoff_factor: float = 2.0
    backoff_max: float = 30.0
    exit_codes: tuple[int, ...] = (0,)
    after_give_up: AfterGiveUp = AfterGiveUp.FATAL
    slow_retry_interval: float = 60.0
    # crash rate: flap_exits exits within flap_window seconds back off too, however long each
    # run lasted (a run just over min_uptime would otherwise restart at once, forever); 0 = off
    flap_exits: int = 5
    flap_window: float = 60.0


class ReadyMode(Enum):
    SPAWN = "spawn"  # ready once it has stayed up for min_uptime (supervisord's startsecs)
    NOTIFY = "notify"  # READY=1 on NOTIFY_SOCKET (sd_notify)
    TCP = "tcp"  # a TCP connect to `target` succeeds
    HTTP = "http"  # GET `target` answers 2xx/3xx
    DELAY = "delay"  # a fixed delay after the spawn


@dataclass(frozen=True)
class ReadySpec:
    mode: ReadyMode = ReadyMode.SPAWN
    target: str = ""  # host:port for TCP, URL for HTTP
    delay: float = 0.0  # for DELAY
    timeout: float = 30.0  # not ready by then: the start failed (the old generation keeps serving)


class HealthKind(Enum):
    HTTP = "http"
    TCP = "tcp"
    COMMAND = "command"


@dataclass(frozen=True)
class HealthSpec:
    kind: HealthKind
    target: str = ""  # URL or host:port
    command: tuple[str, ...] = ()
    interval: float = 10.0
    timeout: float = 5.0
    failures: int = 3  # consecutive failed checks before the program is restarted


class DependCondition(Enum):
    STARTED = "started"  # spawned
    READY = "ready"  # RUNNING (readiness reached)
    HEALTHY = "healthy"  # RUNNING and its last health check passed
    COMPLETED = "completed"  # a oneshot that exited with one of its exit_codes


class ProgramType(Enum):
    SERVICE = "service"  # runs until stopped; an exit is handled by the restart policy
    ONESHOT = "oneshot"  # runs to completion: an exit in exit_codes is success (EXITED, done)


class ExitAction(Enum):
    """What a program's own exit (not one asked for) does to the whole daemon."""

    RESTART = "restart"  # the restart policy decides (auto_restart, exit_codes, max_retry)
    SHUTDOWN = "shutdown"  # stop every program and exit with a code derived from this exit
    IGNORE = "ignore"  # stay EXITED, whatever the restart policy says


class FatalAction(Enum):
    """What giving up on a program (FATAL) does to the whole daemon."""

    IGNORE = "ignore"  # stay FATAL until started again
    SHUTDOWN = "shutdown"  # stop every program and exit with the last exit's code


@dataclass(frozen=True)
class Dependency:
    program: str
    condition: DependCondition = DependCondition.READY


@dataclass(frozen=True)
class LogSpec:
    """Where one stream of a program goes. path None = discarded."""

    path: str | None
    max_bytes: int = 10 * 1024 * 1024
    backups: int = 5
    timestamps: bool = False
    # the daemon's own stdout or stderr ("stdout"/"stderr", the container's), None: not there;
    # each line prefixed with the instance name, or as a JSON object per line
    console: str | None = None
    console_json: bool = False


@dataclass(frozen=True, slots=True)  # slots: one per program instance, no __dict__ each
class ProgramSpec:
    """One process instance to supervise (a program with numprocs=N gives N of these)."""

    name: str  # instance name: "web" or "web:0" when numprocs > 1
    program: str  # the [program.NAME] it comes from
    command: tuple[str, ...]
    directory: str | None = None
    environment: tuple[tuple[str, str], ...] = ()
    autostart: bool = True
    stop_signal: str = "TERM"  # the name, for messages and exported units
    stop_signum: int = 15  # the same, resolved by the config loader (the core sees numbers)
    stop_timeout: float = 10.0
    stop_before_restart: bool = False
    user: str | None = None
    group: str | None = None
    instance: int = 0
    numprocs: int = 1
    numprocs_start: int = 0  # the number of the first instance
    stdout: LogSpec = field(default_factory=lambda: LogSpec(None))
    stderr: LogSpec = field(default_factory=lambda: LogSpec(None))
    redirect_stderr: bool = False  # stderr into the same pipe as stdout: one log, in order
    umask: int | None = None  # None: the supervisor's own
    priority: int = 999  # start order (lower first), stop order reversed; see core/deps.py
    listen_addrs: tuple[str, ...] = ()
    restart: RestartPolicy = field(default_factory=RestartPolicy)
    ready: ReadySpec = field(default_factory=ReadySpec)
    health: HealthSpec | None = None
    watchdog_sec: float = 0.0  # 0 = no watchdog; else WATCHDOG=1 expected at least this often
    depends_on: tuple[Dependency, ...] = ()
    restart_batch: int = 1  # instances restarted at a time when numprocs > 1 (rolling)
    # a cgroup v2 leaf per generation (where available): catches processes that escape both
    # the process group and the tree (double forks), at the price of a slower start (a
    # cgroup migration waits for an RCU grace period: about 10-20 ms)
    cgroup: bool = False
    socket_mode: int = 0o660  # for unix: listen_addrs
    socket_owner: str | None = None  # "user" or "user:group" for unix: listen_addrs
    find: str | None = None  # adopt a running copy found by "cmdline", "cwd" or "exe"
    pidfile: str | None = None  # absolute path of the program's pid file (seed 001's pid lock)
    type: ProgramType = ProgramType.SERVICE
    on_exit: ExitAction = ExitAction.RESTART
    on_fatal: FatalAction = FatalAction.IGNORE
    gates_ready: bool = True  # counts for GET /health?level=ready
    # "file:line" of the [program.NAME] header, for messages; moving a section is no change
    source: str = field(default="", compare=False)


@dataclass(frozen=True)
class GroupSpec:
    """`[group.NAME] programs = [...]`: a name for several programs (`restart NAME:*`)."""

    name: str
    programs: tuple[str, ...]
    source: str = field(default="", compare=False)


def match_instances(
    patterns: list[str],
    instances: list[tuple[str, str]],
    groups: Mapping[str, Sequence[str]] | None = None,
) -> tuple[list[str], list[str]]:
    """What supervisorctl users type -> instance names. `instances` is (instance, program)
    in config order; a pattern is an instance (`web:0`), a program (`web`: all of its
    instances), `web:*`, a group (`workers`, `workers:*`: every instance of its programs),
    `GROUP:INSTANCE` as status shows it, or `all`.
    Returns (names in order, patterns that matched nothing)."""
    groups = groups or {}
    names: list[str] = []
    unknown: list[str] = []
    for pattern in patterns:
        matched = _matching(pattern, instances, groups)
        if not matched:
            unknown.append(pattern)
        names.extend(n for n in matched if n not in names)
    return names, unknown


def _matching(
    pattern: str, instances: list[tuple[str, str]], groups: Mapping[str, Sequence[str]]
) -> list[str]:
    if pattern == "all":
        return [n for n, _ in instances]
    head, sep, rest = pattern.partition(":")
    if head in groups:  # group names never equal program names (the loader checks)
        members = set(groups[head])
        mine = [n for n, p in instances if p in members]
        return mine if not sep or rest == "*" else [n for n in mine if n == rest]
    program = pattern[:-2] if pattern.endswith(":*") else pattern
    return [n for n, p in instances if p == program or n == pattern]


def group_of(groups: Sequence[GroupSpec]) -> dict[str, str]:
    """program -> the group it belongs to (a program belongs to one group at most)."""
    return {p: g.name for g in groups for p in g.programs}


@dataclass(frozen=True)
class HttpSpec:
    """The optional TCP listener ([daemon.http])."""

    listen: str  # HOST:PORT or [v6]:PORT
    open_metrics: bool = False  # /metrics without a credential
    dashboard: bool = False  # the web dashboard, behind a login
    users_file: str = ""  # absolute: NAME ROLE scrypt-hash lines (`twinvisor passwd`)
    session_ttl: float = 3600.0
    tls_cert: str | None = None  # both set: HTTPS
    tls_key: str | None = None


@dataclass(frozen=True)
class DaemonSpec:
    """Where a daemon lives (config/paths.py decides the defaults): the files in it, by name."""

    run_dir: str  # lock, control socket, state file
    log_dir: str  # default place of program logs and the daemon's own log
    socket: str  # control socket path
    http: HttpSpec | None = None  # off unless configured
    console: str = ""  # the programs' default: "" (log files), "text" or "json" (console)

    @property
    def lock_path(self) -> str:
        return f"{self.run_dir}/twinvisor.lock"

    @property
    def pid_path(self) -> str:
        return f"{self.run_dir}/twinvisor.pid"

    @property
    def log_path(self) -> str:
        return f"{self.log_dir}/twinvisor.log"

    @property
    def out_path(self) -> str:
        """The daemon's own stdout/stderr (tracebacks before its logging is set up)."""
        return f"{self.log_dir}/twinvisor.out"

    @property
    def stop_marker(self) -> str:
        """Seed 000's stop file: while it exists, nothing revives the supervisor."""
        return f"{self.run_dir}/stop"

    @property
    def guard_socket(self) -> str:
        return f"{self.run_dir}/guard.sock"

    @property
    def guard_lock_path(self) -> str:
        return f"{self.run_dir}/guard.lock"

    @property
    def guard_pid_path(self) -> str:
        return f"{self.run_dir}/guard.pid"


# what a hook can be run on: the journal's event kinds, and two narrower ones
HOOK_EVENTS = (
    "shutdown",  # a program's exit policy stops the daemon
    "unexpected_exit",  # an exit the program's policy did not expect (not a stop, not exit_codes)
    "fatal",  # gave up (FATAL)
    "exit",
    "state",
    "restart",
    "ready",
    "health",
    "config",
    "takeover",
    "guard",
    "*",
)


@dataclass(frozen=True)
class HookSpec:
    name: str
    command: tuple[str, ...]
    on: tuple[str, ...]  # HOOK_EVENTS
    programs: tuple[str, ...] = ()  # empty: every program (and the daemon's own events)
    timeout: float = 30.0


@dataclass(frozen=True)
class Config:
    path: str  # the main config file, absolute
    daemon: DaemonSpec
    programs: tuple[ProgramSpec, ...]  # instances, in config order
    hooks: tuple[HookSpec, ...] = ()
    groups: tuple[GroupSpec, ...] = ()

    def by_name(self) -> dict[str, ProgramSpec]:
        return {p.name: p for p in self.programs}
