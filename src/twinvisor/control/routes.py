"""The control API's routes: HTTP requests in, runtime calls out. See docs/api.md.

Name arguments accept what supervisorctl users type: an instance (`web:0`), a program (`web`,
all of its instances), `web:*`, a group (`workers`, `workers:*`), or `all`. Every answer is a
Struct of control.messages.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Mapping

from twinvisor import __version__
from twinvisor.config.applied import config_to_dict
from twinvisor.config.signals import signal_number
from twinvisor.config.specs import Config
from twinvisor.config.suggest import no_such_program
from twinvisor.control.messages import (
    ChangesReply,
    ConfigChanges,
    DaemonInfo,
    ErrorReply,
    EventsReply,
    Outcome,
    ProcessState,
    ProcessUsage,
    ShutdownReply,
    SignalReply,
    SignalRequest,
    StatusReply,
    UpdateReply,
    UpgradeReply,
    UsageReply,
    VerbReply,
    VersionReply,
)
from twinvisor.control.names import resolve_names
from twinvisor.control.server import Handler, HTTPError, Request, Response, Router
from twinvisor.control.ui_table import LazyRoutes, ui_routes
from twinvisor.errors import ConfigError
from twinvisor.supervisor.configload import load_config_async
from twinvisor.supervisor.runtime import Runtime, diff_configs

DEFAULT_WAIT = 60.0
MAX_EVENT_WAIT = 60.0  # a long poll answers by then at the latest, events or not
_ALIVE = (ProcessState.STARTING, ProcessState.RUNNING)
_STOPPED = (ProcessState.STOPPED, ProcessState.EXITED, ProcessState.FATAL)

# start, stop and restart of the runtime: names and a timeout in, an outcome per name out
Verb = Callable[[list[str], float | None], Awaitable[Mapping[str, Outcome]]]


def build_router(
    runtime: Runtime,
    shutdown: Callable[[], Awaitable[ShutdownReply]],
    upgrade: Callable[[], Awaitable[UpgradeReply]] | None = None,
) -> Router:
    router = Router()
    api = _Routes(runtime, router, shutdown, upgrade)

    # the dashboard's pages on the control socket too (through `ssh -L` to the socket); its
    # peers are vouched for by SO_PEERCRED, so there is no login, but actions need its CSRF
    # token. Built on its first request: see control/ui_table.py
    def dashboard() -> list[tuple[str, str, Handler]]:
        from twinvisor.control.dashboard import Dashboard

        return Dashboard(runtime, runtime.config.daemon.http, trusted=True).routes()

    LazyRoutes(dashboard).add_to(router, ui_routes(trusted=True))
    router.add("GET", "/metrics", api.metrics)
    router.add("GET", "/usage", api.usage)
    router.add("GET", "/events", api.events)
    router.add("GET", "/version", api.version)
    router.add("GET", "/status", api.status)
    router.add("GET", "/config", api.config)
    # a start of what runs, a stop of what is stopped: "already" in the answer, not "started"
    router.add("POST", "/programs/{name}/start", api.verb(runtime.start, _ALIVE))
    router.add("POST", "/programs/{name}/stop", api.verb(runtime.stop, _STOPPED))
    router.add("POST", "/programs/{name}/restart", api.verb(runtime.restart))
    router.add("POST", "/programs/{name}/signal", api.signal)
    router.add("POST", "/reread", api.reread)
    router.add("POST", "/update", api.update)
    router.add("POST", "/shutdown", api.shutdown)
    router.add("POST", "/upgrade", api.upgrade)
    return router


class _Routes:
    """One handler per route, all on the same runtime."""

    def __init__(
        self,
        runtime: Runtime,
        router: Router,
        shutdown: Callable[[], Awaitable[ShutdownReply]],
        upgrade: Callable[[], Awaitable[UpgradeReply]] | None,
    ) -> None:
        self._runtime = runtime
        self._router = router  # its request counts are in the metrics
        self._shutdown = shutdown
        self._upgrade = upgrade

    def _names(self, patterns: list[str]) -> list[str]:
        """The instances `patterns` name; 404 (listing them) when some name nothing."""
        names, unknown = resolve_names(self._runtime, patterns)
        if unknown:  # each with the nearest program: "did you mean 'web'?"
            procs = self._runtime.procs
            known = list(dict.fromkeys([procs[n].spec.program for n in procs] + list(procs)))
            message = no_such_program(unknown, known)
            raise HTTPError(404, message, ErrorReply(error=message, unknown=unknown))
        return names

    async def version(self, req: Request) -> Response:
        config = self._runtime.config.path
        return Response(200, VersionReply(version=__version__, pid=os.getpid(), config=config))

    async def status(self, req: Request) -> Response:
        patterns = [p for p in req.query.get("names", "").split(",") if p]
        names = self._names(patterns) if patterns else None
        rt = self._runtime  # who answers, and whether the config on disk is the one it runs
        daemon = DaemonInfo(
            pid=os.getpid(), config=rt.config.path, config_problems=list(rt.config_problems)
        )
        return Response(200, StatusReply(programs=self._runtime.status(names), daemon=daemon))

    async def config(self, req: Request) -> Response:
        return Response(200, config_to_dict(self._runtime.config))

    def verb(self, action: Verb, done_in: tuple[ProcessState, ...] = ()) -> Handler:
        """start, stop or restart: wait for the outcomes; 409 unless every one is ok. Those
        in a state of `done_in` beforehand had nothing to do: they are listed as `already`."""

        async def handler(req: Request) -> Response:
            names = self._names(req.params["name"].split(","))
            already = [n for n in names if self._runtime.procs[n].state in done_in]
            results = dict(await action(names, _wait_timeout(req)))
            ok = all(v is Outcome.OK for v in results.values())
            programs = self._runtime.status(names)
            reply = VerbReply(ok=ok, results=results, already=already, programs=programs)
            return Response(200 if ok else 409, reply)

        return handler

    async def signal(self, req: Request) -> Response:
        try:
            sig = signal_number(req.decode(SignalRequest).signal)
        except ValueError as e:
            raise HTTPError(400, str(e)) from None
        names = self._names(req.params["name"].split(","))
        sent = {n: self._runtime.send_signal(n, sig) for n in names}
        ok = all(sent.values())
        return Response(200 if ok else 409, SignalReply(ok=ok, sent=sent))

    async def reread(self, req: Request) -> Response:
        new = await self._load()
        return Response(
            200, ChangesReply(changes=_changes(diff_configs(self._runtime.config, new)))
        )

    async def update(self, req: Request) -> Response:
        new = await self._load()  # a config with errors changes nothing
        if new.daemon != self._runtime.config.daemon:
            raise HTTPError(409, "the [daemon] section changed: restart the daemon to apply it")
        changes = _changes(await self._runtime.apply_config(new))
        return Response(200, UpdateReply(changes=changes, programs=self._runtime.status()))

    async def metrics(self, req: Request) -> Response:
        from twinvisor.control import metrics

        text = await metrics.render(self._runtime, self._router)
        return Response(200, text, (("content-type", metrics.CONTENT_TYPE),))

    async def events(self, req: Request) -> Response:
        """Long poll: events after `after` (an id), waiting up to `wait` s for the first."""
        try:
            after = int(req.query.get("after", "0"))
            wait = min(max(float(req.query.get("wait", "0")), 0.0), MAX_EVENT_WAIT)
        except ValueError:
            raise HTTPError(
                400, "after must be an integer id and wait a number of seconds"
            ) from None
        patterns = [p for p in req.query.get("names", "").split(",") if p]
        names = self._names(patterns) if patterns else None
        if names is not None:  # a program's own events (a config apply) name no instance
            names += sorted({self._runtime.procs[n].spec.program for n in names})
        journal = self._runtime.journal
        found = await journal.wait(after, wait, names)
        return Response(200, EventsReply(events=found, last_id=journal.last_id))

    async def usage(self, req: Request) -> Response:
        found = await self._runtime.usage()
        usage = {
            n: ProcessUsage(cpu_seconds=u.cpu_seconds, rss_bytes=u.rss_bytes, open_fds=u.open_fds)
            for n, u in found.items()
        }
        return Response(200, UsageReply(usage=usage))

    async def shutdown(self, req: Request) -> Response:
        return Response(200, await self._shutdown())

    async def upgrade(self, req: Request) -> Response:
        if self._upgrade is None:
            raise HTTPError(409, "upgrade is not available")
        result = await self._upgrade()
        return Response(200 if result.ok else 409, result)

    async def _load(self) -> Config:
        """The config on disk; 400 with its problems when it has errors."""
        try:
            return await load_config_async(self._runtime.config.path)
        except ConfigError as e:
            message = "the config has errors; nothing was changed"
            problems = [str(p) for p in e.problems]
            raise HTTPError(400, message, ErrorReply(error=message, problems=problems)) from None


def _wait_timeout(req: Request) -> float | None:
    raw = req.query.get("timeout")
    if raw is None:
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_WAIT
    return None if value <= 0 else value


def _changes(diff: Mapping[str, list[str]]) -> ConfigChanges:
    return ConfigChanges(added=diff["added"], removed=diff["removed"], changed=diff["changed"])
