"""The routes of the TCP listener that need no credential: health probes and, when configured
open, metrics. Kubernetes probes and load balancers read `/health`:

    GET /health?level=alive   200 while the supervisor's loop answers
    GET /health?level=ready   200 when every autostart program the user has not stopped is
                              RUNNING (ready by its readiness check), or a oneshot that
                              completed, else 503 naming them; a program with
                              `gates_ready = false` never counts

Both answer a small JSON body: {"ok": true|false, "level": "...", "not_ready": [...]}.
"""

from __future__ import annotations

from twinvisor.config.specs import HttpSpec
from twinvisor.control import metrics
from twinvisor.control.server import Request, Response, Router
from twinvisor.core.states import ProcessState
from twinvisor.supervisor.runtime import Runtime


def not_ready(runtime: Runtime) -> list[str]:
    wanted = runtime.state_file.desired
    return [
        name
        for name, p in runtime.procs.items()
        if p.spec.gates_ready
        and wanted.get(name, p.spec.autostart)
        and p.state is not ProcessState.RUNNING
        and not p.completed
    ]


def build_public_router(runtime: Runtime, spec: HttpSpec) -> Router:
    router = Router()
    open_metrics = spec.open_metrics
    if spec.dashboard:  # behind a login: see control/dashboard.py
        from twinvisor.control.dashboard import Dashboard

        Dashboard(runtime, spec, trusted=False).add_routes(router)

    async def health(req: Request) -> Response:
        level = req.query.get("level", "alive")
        if level == "alive":
            return Response(200, {"ok": True, "level": "alive"})
        if level != "ready":
            return Response(400, {"error": "level must be 'alive' or 'ready'"})
        waiting = not_ready(runtime)
        return Response(
            503 if waiting else 200, {"ok": not waiting, "level": "ready", "not_ready": waiting}
        )

    router.add("GET", "/health", health)
    if open_metrics:

        async def metrics_handler(req: Request) -> Response:
            text = await metrics.render(runtime, router)
            return Response(200, text, (("content-type", metrics.CONTENT_TYPE),))

        router.add("GET", "/metrics", metrics_handler)
    return router
