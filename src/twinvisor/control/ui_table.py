"""The dashboard's routes, by method and pattern, known without the dashboard itself.

A supervisor registers them on its control socket at start, but builds the dashboard (its
module, the login machinery, urllib.parse) only on the first request to one of them: most
supervisors never serve a page, and would hold that code for the life of the daemon.
`Dashboard.routes` answers exactly these, so the table cannot drift from the handlers.
"""

from __future__ import annotations

from collections.abc import Callable

from twinvisor.control.server import Handler, Request, Response, Router


def ui_routes(*, trusted: bool) -> list[tuple[str, str]]:
    """(method, pattern) of every dashboard route; /login only where there are logins."""
    routes = [
        ("GET", "/"),
        ("GET", "/static/{file}"),
        ("GET", "/ui/status"),
        ("GET", "/ui/events"),
        ("GET", "/ui/logs/{name}"),
        *(("POST", f"/ui/programs/{{name}}/{verb}") for verb in ("start", "stop", "restart")),
        ("POST", "/ui/programs/{name}/signal"),
        ("POST", "/logout"),
    ]
    if not trusted:
        routes.append(("POST", "/login"))
    return routes


class LazyRoutes:
    """Routes whose handlers `build()` makes on the first request to any of them."""

    def __init__(self, build: Callable[[], list[tuple[str, str, Handler]]]) -> None:
        self._build = build
        self._handlers: dict[tuple[str, str], Handler] | None = None

    def add_to(self, router: Router, routes: list[tuple[str, str]]) -> None:
        for method, pattern in routes:
            router.add(method, pattern, self._deferred(method, pattern))

    def _deferred(self, method: str, pattern: str) -> Handler:
        async def handle(req: Request) -> Response:
            if self._handlers is None:
                self._handlers = {(m, p): h for m, p, h in self._build()}
            return await self._handlers[(method, pattern)](req)

        return handle
