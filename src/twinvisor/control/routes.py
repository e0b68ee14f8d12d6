"""The control API's routes: HTTP requests in, runtime calls out. See docs/api.md.

Name arguments accept what supervisorctl users type: an instance (`web:0`), a program (`web`,
all of its instances), `web:*`, or `all`.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from twinvisor import __version__
from twinvisor.config.load import config_to_dict, load_config
from twinvisor.config.signals import signal_number
from twinvisor.config.values import no_such_program
from twinvisor.control.names import resolve_names
from twinvisor.control.server import Request, Response, Router
from twinvisor.core.states import ProcessState
from twinvisor.errors import ConfigError
from twinvisor.supervisor.runtime import Runtime, diff_configs

DEFAULT_WAIT = 60.0
MAX_EVENT_WAIT = 60.0  # a long poll answers by then at the latest, events or not


def _error(status: int, message: str, **extra: Any) -> Response:
    return Response(status, {"error": message, **extra})


def _wait_timeout(req: Request) -> float | None:
    raw = req.query.get("timeout")
    if raw is None:
        return DEFAULT_WAIT
    try:
        value = float(raw)
    except ValueError:
        return DEFAULT_WAIT
    return None if value <= 0 else value


def build_router(
    runtime: Runtime,
    shutdown: Callable[[], Awaitable[dict[str, Any]]],
    upgrade: Callable[[], Awaitable[dict[str, Any]]] | None = None,
) -> Router:
    router = Router()

    async def version(req: Request) -> Response:
        body = {"version": __version__, "pid": os.getpid(), "config": runtime.config.path}
        return Response(200, body)

    async def status(req: Request) -> Response:
        patterns = [p for p in req.query.get("names", "").split(",") if p]
        names, unknown = resolve_names(runtime, patterns) if patterns else (None, [])
        if unknown:
            return _no_such(runtime, unknown)
        daemon: dict[str, Any] = {"pid": os.getpid(), "config": runtime.config.path}
        if runtime.config_problems:  # the file on disk has errors: we run the last applied one
            daemon["config_problems"] = runtime.config_problems
        return Response(200, {"programs": runtime.status(names), "daemon": daemon})

    def verb(
        action: Callable[[list[str], float | None], Awaitable[Mapping[str, str]]],
        done_before: Callable[[ProcessState], bool] | None = None,
    ) -> Callable[[Request], Awaitable[Response]]:
        """`done_before`: the states in which the verb has nothing to do (start: alive),
        reported as "already" so the CLI can say "already running" instead of "started"."""

        async def handler(req: Request) -> Response:
            patterns = req.params["name"].split(",")
            names, unknown = resolve_names(runtime, patterns)
            if unknown:
                return _no_such(runtime, unknown)
            procs = runtime.core.procs
            already = [n for n in names if done_before and done_before(procs[n].state)]
            outcomes = await action(names, _wait_timeout(req))
            ok = all(v == "ok" for v in outcomes.values())
            return Response(
                200 if ok else 409,
                {
                    "ok": ok,
                    "results": outcomes,
                    "already": already,
                    "programs": runtime.status(names),
                },
            )

        return handler

    async def signal_handler(req: Request) -> Response:
        body = req.body if isinstance(req.body, dict) else {}
        try:
            sig = signal_number(str(body.get("signal", "")))
        except ValueError as e:
            return _error(400, str(e))
        names, unknown = resolve_names(runtime, req.params["name"].split(","))
        if unknown:
            return _no_such(runtime, unknown)
        sent = {n: runtime.send_signal(n, sig) for n in names}
        return Response(
            200 if all(sent.values()) else 409, {"ok": all(sent.values()), "sent": sent}
        )

    async def reread(req: Request) -> Response:
        try:
            new = load_config(runtime.config.path)  # no thread: spawns fork this process
        except ConfigError as e:
            return _config_error(e)
        return Response(200, {"changes": diff_configs(runtime.config, new)})

    async def update(req: Request) -> Response:
        try:
            new = load_config(runtime.config.path)  # no thread: spawns fork this process
        except ConfigError as e:
            return _config_error(e)  # a config with errors changes nothing
        if new.daemon != runtime.config.daemon:
            return _error(409, "the [daemon] section changed: restart the daemon to apply it")
        changes = await runtime.apply_config(new)
        return Response(200, {"changes": changes, "programs": runtime.status()})

    async def config(req: Request) -> Response:
        return Response(200, config_to_dict(runtime.config))

    async def down(req: Request) -> Response:
        return Response(200, await shutdown())

    async def metrics_handler(req: Request) -> Response:
        from twinvisor.control import metrics

        text = await metrics.render(runtime, router)
        return Response(200, text, (("content-type", metrics.CONTENT_TYPE),))

    async def events(req: Request) -> Response:
        """Long poll: events after `after` (an id), waiting up to `wait` s for the first."""
        try:
            after = int(req.query.get("after", "0"))
            wait = min(max(float(req.query.get("wait", "0")), 0.0), MAX_EVENT_WAIT)
        except ValueError:
            return _error(400, "after must be an integer id and wait a number of seconds")
        patterns = [p for p in req.query.get("names", "").split(",") if p]
        names: list[str] | None = None
        if patterns:
            names, unknown = resolve_names(runtime, patterns)
            if unknown:
                return _error(404, f"no such program: {', '.join(unknown)}", unknown=unknown)
            names += sorted({runtime.procs[n].spec.program for n in names})
        found = await runtime.journal.wait(after, wait, names)
        return Response(200, {"events": found, "last_id": runtime.journal.last_id})

    async def usage(req: Request) -> Response:
        from twinvisor.linux import kernel

        pids = {n: p.pid for n, p in runtime.procs.items() if p.pid is not None}
        found = await asyncio.to_thread(
            lambda: {n: kernel.process_usage(p) for n, p in pids.items()}
        )
        return Response(200, {"usage": {n: u for n, u in found.items() if u is not None}})

    # the dashboard's pages on the control socket too (through `ssh -L` to the socket); its
    # peers are vouched for by SO_PEERCRED, so there is no login, but actions need its CSRF token
    from twinvisor.control.dashboard import Dashboard

    Dashboard(runtime, runtime.config.daemon.http, trusted=True).add_routes(router)
    router.add("GET", "/metrics", metrics_handler)
    router.add("GET", "/usage", usage)
    router.add("GET", "/events", events)
    router.add("GET", "/version", version)
    router.add("GET", "/status", status)
    router.add("GET", "/config", config)
    alive = ProcessState.STARTING, ProcessState.RUNNING
    router.add("POST", "/programs/{name}/start", verb(runtime.start, lambda s: s in alive))
    stopped = ProcessState.STOPPED, ProcessState.EXITED, ProcessState.FATAL
    router.add("POST", "/programs/{name}/stop", verb(runtime.stop, lambda s: s in stopped))
    router.add("POST", "/programs/{name}/restart", verb(runtime.restart))
    router.add("POST", "/programs/{name}/signal", signal_handler)
    router.add("POST", "/reread", reread)
    router.add("POST", "/update", update)
    router.add("POST", "/shutdown", down)

    async def upgrade_handler(req: Request) -> Response:
        if upgrade is None:
            return _error(409, "upgrade is not available")
        result = await upgrade()
        return Response(200 if result.get("ok") else 409, result)

    router.add("POST", "/upgrade", upgrade_handler)
    return router


def _no_such(runtime: Runtime, unknown: list[str]) -> Response:
    """404 naming each unknown pattern with the nearest program ("did you mean 'web'?")."""
    procs = runtime.core.procs
    known = list(dict.fromkeys([procs[n].spec.program for n in procs] + list(procs)))
    return _error(404, no_such_program(unknown, known), unknown=unknown)


def _config_error(e: ConfigError) -> Response:
    return _error(
        400,
        "the config has errors; nothing was changed",
        problems=[str(p) for p in e.problems],
    )
