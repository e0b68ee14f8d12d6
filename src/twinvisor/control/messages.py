"""The control API's bodies, one msgspec Struct each: what the routes encode, the client decodes
and the CLI renders. The field names and values are the wire format of docs/api.md; `curl`
users and scripts read it, so a change here is an API change.

Unknown fields are ignored and optional ones have defaults, so that a CLI can read a daemon of a
neighbouring version; a request body of the wrong shape is a 400 (`Request.decode`).
"""

from __future__ import annotations

import msgspec

from twinvisor.core.states import Outcome, ProcessState
from twinvisor.supervisor.event_record import EventRecord
from twinvisor.supervisor.status import StatusRow

__all__ = [
    "ChangesReply",
    "ConfigChanges",
    "DaemonInfo",
    "ErrorReply",
    "EventRecord",
    "EventsReply",
    "Outcome",
    "ProcessState",
    "ProcessUsage",
    "ShutdownReply",
    "SignalReply",
    "SignalRequest",
    "StatusReply",
    "StatusRow",
    "UpdateReply",
    "UpgradeReply",
    "UsageReply",
    "VerbReply",
    "VersionReply",
]


class ErrorReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Every 4xx/5xx: `{"error": message}`, plus the details some routes add."""

    error: str
    unknown: list[str] = []  # 404 of a name route: the patterns that matched nothing
    problems: list[str] = []  # 400 of reread/update: the config's errors, "file:line: key: ..."


class VersionReply(msgspec.Struct, frozen=True, kw_only=True):
    version: str
    pid: int  # the supervisor's
    config: str | None = None  # absolute path of the config it runs


class DaemonInfo(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    """Which daemon answers: several may share a folder, one per config file."""

    pid: int  # the supervisor's
    config: str  # absolute path of the config it runs
    # the file on disk has errors (a takeover kept the last applied config): what they are
    config_problems: list[str] = []


class StatusReply(msgspec.Struct, frozen=True, kw_only=True):
    programs: list[StatusRow]
    daemon: DaemonInfo | None = None


class VerbReply(msgspec.Struct, frozen=True, kw_only=True):
    """start, stop, restart: 200 when every outcome is ok, 409 otherwise."""

    ok: bool
    results: dict[str, Outcome]
    already: list[str] = []  # had nothing to do: running before a start, stopped before a stop
    programs: list[StatusRow] = []


class SignalRequest(msgspec.Struct, frozen=True):
    signal: str | int  # "HUP", "SIGHUP" or 1


class SignalReply(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool
    sent: dict[str, bool]  # False: the instance was not running


class ConfigChanges(msgspec.Struct, frozen=True, kw_only=True):
    """Instance names, between the running config and the one on disk."""

    added: list[str] = []
    removed: list[str] = []
    changed: list[str] = []


class ChangesReply(msgspec.Struct, frozen=True, kw_only=True):
    """reread: what update would do."""

    changes: ConfigChanges


class UpdateReply(msgspec.Struct, frozen=True, kw_only=True):
    changes: ConfigChanges
    programs: list[StatusRow] = []


class ShutdownReply(msgspec.Struct, frozen=True, kw_only=True):
    ok: bool  # every program stopped and no process of ours is left
    results: dict[str, Outcome] = {}
    leftover: list[int] = []  # pids still alive after the stop


class UpgradeReply(msgspec.Struct, frozen=True, kw_only=True, omit_defaults=True):
    ok: bool
    old_pid: int | None = None  # the supervisor that hands over (ok)
    error: str | None = None  # why not (409)


class EventsReply(msgspec.Struct, frozen=True, kw_only=True):
    """GET /events: the events after the id asked for; `last_id` to ask from next time."""

    events: list[EventRecord]
    last_id: int


class ProcessUsage(msgspec.Struct, frozen=True, kw_only=True):
    cpu_seconds: float  # user + system time of the main process
    rss_bytes: int
    open_fds: int | None = None  # None when /proc/PID/fd is not readable (another uid)


class UsageReply(msgspec.Struct, frozen=True, kw_only=True):
    """GET /usage: the live programs' main processes, by instance."""

    usage: dict[str, ProcessUsage]
