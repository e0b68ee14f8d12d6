"""The web dashboard: pages and `/ui/...` routes, served on the TCP listener behind a login and
on the control socket (whose peers SO_PEERCRED already vouches for, e.g. through `ssh -L`).

Safety, all here so no handler can forget it:
* no credential -> 401 on everything but /health (and /metrics when open); the login page is
  the body of that 401;
* sessions: random ids in an `HttpOnly; SameSite=Strict` cookie (+ `Secure` over TLS) that
  expire `session_ttl` after their last use; logins throttled per user name and overall;
* every action is a POST carrying the session's CSRF token (X-CSRF-Token), from our own
  Origin, to a Host we serve (DNS rebinding); GET on an action is 405; read-only users get 403;
* every answer has a strict Content-Security-Policy (no inline script), X-Frame-Options DENY,
  nosniff, no-store; the page writes program output with textContent only, so a program that
  prints `<script>` shows it as text.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from urllib.parse import urlsplit

import msgspec

from twinvisor.config.paths import sha256_hex
from twinvisor.config.specs import HttpSpec
from twinvisor.control import auth
from twinvisor.control.names import resolve_names
from twinvisor.control.server import Handler, Request, Response, Router
from twinvisor.control.ui_table import ui_routes
from twinvisor.supervisor.runtime import Runtime

log = logging.getLogger("twinvisor.control")

COOKIE = "twinvisor_session"
MAX_LOG_CHUNK = 64 * 1024
_STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
_LOGIN_STYLE = (
    "body{font:15px system-ui,sans-serif;display:flex;justify-content:center;margin-top:12vh;"
    "background:#f4f5f7}form{background:#fff;padding:24px;border-radius:8px;width:280px;"
    "box-shadow:0 1px 4px #0002}input,button{display:block;width:100%;margin:8px 0;"
    "padding:8px;box-sizing:border-box;font:inherit}button{background:#2458c5;color:#fff;"
    "border:0;border-radius:4px}.err{color:#b00020}"
)
# sha256 without hashlib's OpenSSL (config/paths.py): this module is built for every supervisor
_STYLE_HASH = base64.b64encode(bytes.fromhex(sha256_hex(_LOGIN_STYLE.encode()))).decode()
CSP = (
    "default-src 'none'; script-src 'self'; connect-src 'self'; img-src 'self' data:; "
    f"style-src 'self' 'sha256-{_STYLE_HASH}'; form-action 'self'; frame-ancestors 'none'; "
    "base-uri 'none'"
)
SECURITY_HEADERS = (
    ("content-security-policy", CSP),
    ("x-frame-options", "DENY"),
    ("x-content-type-options", "nosniff"),
    ("referrer-policy", "same-origin"),  # no-referrer would make form posts send Origin: null
    ("cache-control", "no-store"),
)


def _with_headers(resp: Response, *extra: tuple[str, str]) -> Response:
    return Response(resp.status, resp.body, (*resp.headers, *SECURITY_HEADERS, *extra))


def _html(status: int, text: str, *extra: tuple[str, str]) -> Response:
    return Response(status, text.encode(), (("content-type", "text/html; charset=utf-8"), *extra))


def _cookie(headers: dict[str, str], name: str) -> str | None:
    for part in headers.get("cookie", "").split(";"):
        key, _, value = part.strip().partition("=")
        if key == name:
            return value
    return None


# html (its entities table) and importlib.resources (tempfile, shutil, zipfile behind it) are
# imported by the pages that need them: every supervisor builds this for its control socket,
# and most never serve a page


def login_page(message: str = "") -> str:
    import html

    err = f'<p class="err">{html.escape(message)}</p>' if message else ""
    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>twinvisor: log in</title><style>{_LOGIN_STYLE}</style></head><body>"
        '<form method="post" action="/login"><h1>twinvisor</h1>'
        f"{err}"
        '<input name="user" placeholder="user" autocomplete="username" required autofocus>'
        '<input name="password" type="password" placeholder="password" '
        'autocomplete="current-password" required>'
        '<button type="submit" id="login">Log in</button></form></body></html>'
    )


def dashboard_page(csrf: str, user: str, role: str) -> str:
    import html

    return (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f'<meta name="csrf-token" content="{html.escape(csrf)}">'
        f'<meta name="user" content="{html.escape(user)}">'
        f'<meta name="role" content="{html.escape(role)}">'
        '<title>twinvisor</title><link rel="stylesheet" href="/static/dashboard.css">'
        '<script src="/static/dashboard.js" defer></script></head><body>'
        '<header><h1>twinvisor</h1><span id="who"></span>'
        '<button id="logout" type="button">Log out</button></header>'
        '<main><section><h2>Programs</h2><div id="programs"></div></section>'
        '<section><h2>Log</h2><div class="logbar"><select id="log-name"></select>'
        '<select id="log-stream"><option>stdout</option><option>stderr</option></select></div>'
        '<pre id="log"></pre></section>'
        '<section><h2>Events</h2><ol id="events" reversed></ol></section></main>'
        "</body></html>"
    )


class _NoUsers(Exception):
    """Nobody can log in: the users file is missing or unreadable (the message says what to do)."""


class Dashboard:
    def __init__(self, runtime: Runtime, spec: HttpSpec | None, *, trusted: bool) -> None:
        """`trusted`: the control socket, whose peer uid the transport checked (an implicit
        admin session with a per-process CSRF token); else the TCP listener (logins)."""
        self.runtime = runtime
        self.trusted = trusted
        self.secure = bool(spec and spec.tls_cert)
        self.sessions = auth.Sessions(ttl=spec.session_ttl if spec else 3600.0)
        self.throttle = auth.Throttle()
        self.spray = auth.Throttle(free=50, lockout=60.0)  # all failed logins together
        self.users_file = spec.users_file if spec else ""
        self._implicit = auth.Session("local", auth.Role.ADMIN, os.urandom(24).hex(), 0.0)

    # -- who is asking ----------------------------------------------------------------------

    def _session(self, req: Request) -> auth.Session | None:
        if self.trusted:
            return self._implicit
        return self.sessions.get(_cookie(req.headers, COOKIE), time.monotonic())

    def _host_ok(self, req: Request) -> bool:
        """The Host a browser used must be one we serve: a rebinding DNS name is refused."""
        host = req.headers.get("host", "")
        name = urlsplit(f"//{host}").hostname or ""
        if self.trusted:  # reached through a forwarded port: a loopback name, any port
            return name in ("localhost", "127.0.0.1", "::1") or not host
        listen_host = self.runtime.config.daemon.http
        configured = (listen_host.listen.rpartition(":")[0].strip("[]")) if listen_host else ""
        return name in ("localhost", "127.0.0.1", "::1", configured)

    def _same_origin(self, req: Request) -> bool:
        origin = req.headers.get("origin")
        if origin is None:  # browsers send it on every POST; curl and scripts may not
            site = req.headers.get("sec-fetch-site")
            return site in (None, "same-origin", "none")
        scheme = "https" if self.secure else "http"
        return origin == f"{scheme}://{req.headers.get('host', '')}"

    def guard(self, handler: Handler, *, write: bool = False, page: bool = False) -> Handler:
        async def guarded(req: Request) -> Response:
            if not self._host_ok(req):
                return _with_headers(Response(403, {"error": "unexpected Host header"}))
            session = self._session(req)
            if session is None:
                if page:
                    return _with_headers(_html(401, login_page()))
                return _with_headers(Response(401, {"error": "log in first"}))
            if write:
                problem = self._write_problem(req, session)
                if problem:
                    log.warning("dashboard: refused %s %s: %s", req.method, req.path, problem)
                    return _with_headers(Response(403, {"error": problem}))
            return _with_headers(await handler(req))

        return guarded

    def _write_problem(self, req: Request, session: auth.Session) -> str | None:
        if not self._same_origin(req):
            return "cross-origin request refused"
        token = req.headers.get("x-csrf-token", "")
        if not token or token != session.csrf:
            return "missing or wrong CSRF token"
        if session.role is not auth.Role.ADMIN:
            return f"user {session.user!r} may only look (role read)"
        return None

    # -- routes -------------------------------------------------------------------------------

    def routes(self) -> list[tuple[str, str, Handler]]:
        """Every route of the dashboard with its handler, in the order of `ui_routes`."""
        wiring = self.wiring()
        return [(m, p, wiring[m, p]) for m, p in ui_routes(trusted=self.trusted)]

    def wiring(self) -> dict[tuple[str, str], Handler]:
        """The handler of each (method, pattern), /login included: `ui_routes` picks."""
        wiring: dict[tuple[str, str], Handler] = {
            ("GET", "/"): self.guard(self.page, page=True),
            ("GET", "/static/{file}"): self.guard(self.static),
            ("GET", "/ui/status"): self.guard(self.status),
            ("GET", "/ui/events"): self.guard(self.events),
            ("GET", "/ui/logs/{name}"): self.guard(self.logs),
            ("POST", "/ui/programs/{name}/signal"): self.guard(self.signal, write=True),
            ("POST", "/logout"): self.guard(self.logout, write=True),
            ("POST", "/login"): self.login,
        }
        for verb in ("start", "stop", "restart"):
            pattern = f"/ui/programs/{{name}}/{verb}"
            wiring["POST", pattern] = self.guard(self.verb(verb), write=True)
        return wiring

    def add_routes(self, router: Router) -> None:
        for method, pattern, handler in self.routes():
            router.add(method, pattern, handler)

    async def page(self, req: Request) -> Response:
        session = self._session(req)
        assert session is not None
        return _html(200, dashboard_page(session.csrf, session.user, session.role.value))

    async def static(self, req: Request) -> Response:
        name = req.params["file"]
        kind = _STATIC.get(name)
        if kind is None:
            return Response(404, {"error": f"no such file: {name}"})
        from importlib import resources

        data = resources.files("twinvisor.control").joinpath("static", name).read_bytes()
        return Response(200, data, (("content-type", f"{kind}; charset=utf-8"),))

    async def status(self, req: Request) -> Response:
        rt = self.runtime
        usage = await rt.usage()
        rows = []
        for row in rt.status():
            use = usage.get(row.name)
            rows.append(
                {
                    **msgspec.structs.asdict(row),
                    "cpu_seconds": use.cpu_seconds if use else None,
                    "rss_bytes": use.rss_bytes if use else None,
                    "group": row.group or row.program,  # a program alone is its own group
                }
            )
        return Response(200, {"programs": rows, "last_event": rt.journal.last_id})

    async def events(self, req: Request) -> Response:
        try:
            after = int(req.query.get("after", "0"))
            wait = min(max(float(req.query.get("wait", "0")), 0.0), 30.0)
        except ValueError:
            return Response(400, {"error": "after must be an id, wait seconds"})
        found = await self.runtime.journal.wait(after, wait)
        return Response(200, {"events": found, "last_id": self.runtime.journal.last_id})

    async def logs(self, req: Request) -> Response:
        name = req.params["name"]
        proc = self.runtime.procs.get(name)
        stream = req.query.get("stream", "stdout")
        if proc is None or stream not in ("stdout", "stderr"):
            return Response(404, {"error": f"no such program or stream: {name} {stream}"})
        path = (proc.spec.stdout if stream == "stdout" else proc.spec.stderr).path
        try:
            offset = int(req.query.get("offset", "-1"))
        except ValueError:
            return Response(400, {"error": "offset must be an integer"})
        data, offset = await asyncio.to_thread(_read_log, path, offset)
        return Response(200, {"data": data, "offset": offset, "file": path})

    def verb(self, verb: str) -> Handler:
        async def handler(req: Request) -> Response:
            names, unknown = resolve_names(self.runtime, req.params["name"].split(","))
            if unknown:
                return Response(404, {"error": f"no such program: {', '.join(unknown)}"})
            action = getattr(self.runtime, verb)
            outcomes = await action(names, 60.0)
            ok = all(v == "ok" for v in outcomes.values())
            return Response(200 if ok else 409, {"ok": ok, "results": outcomes})

        return handler

    async def signal(self, req: Request) -> Response:
        from twinvisor.config.signals import signal_number

        body = req.body if isinstance(req.body, dict) else {}
        try:
            sig = signal_number(str(body.get("signal", "")))
        except (ValueError, OverflowError) as e:
            return Response(400, {"error": str(e)})
        names, unknown = resolve_names(self.runtime, req.params["name"].split(","))
        if unknown:
            return Response(404, {"error": f"no such program: {', '.join(unknown)}"})
        sent = {n: self.runtime.send_signal(n, sig) for n in names}
        return Response(
            200 if all(sent.values()) else 409, {"ok": all(sent.values()), "sent": sent}
        )

    # -- logging in and out -------------------------------------------------------------------

    async def login(self, req: Request) -> Response:
        if not self._host_ok(req) or not self._same_origin(req):
            return _with_headers(Response(403, {"error": "cross-origin login refused"}))
        body = req.body if isinstance(req.body, dict) else {}
        user_name, password = str(body.get("user", "")), str(body.get("password", ""))
        now = time.monotonic()
        wait = max(self.throttle.blocked_for(user_name, now), self.spray.blocked_for("*", now))
        if wait > 0:
            headers = (("retry-after", str(int(wait) + 1)),)
            return _with_headers(_html(429, login_page("Too many failed logins: wait."), *headers))
        try:
            user = await asyncio.to_thread(self._check, user_name, password)
        except _NoUsers as e:  # not a failed guess: the operator has a step left to do
            return _with_headers(_html(503, login_page(str(e))))
        if user is None:
            self.throttle.failed(user_name, now)
            self.spray.failed("*", now)
            log.warning("dashboard: failed login for %r", user_name[:64])
            return _with_headers(_html(401, login_page("Wrong user or password.")))
        self.throttle.succeeded(user_name)
        sid, _ = self.sessions.create(user, now)
        flags = "; Secure" if self.secure else ""
        cookie = f"{COOKIE}={sid}; HttpOnly; SameSite=Strict; Path=/{flags}"
        log.info("dashboard: %s logged in (%s)", user.name, user.role.value)
        return _with_headers(Response(303, None, (("location", "/"), ("set-cookie", cookie))))

    def _check(self, name: str, password: str) -> auth.User | None:
        try:
            with open(self.users_file, encoding="utf-8") as f:
                users = auth.parse_users(f.read(1 << 20), self.users_file)
        except FileNotFoundError:
            log.error(
                "dashboard: no users file at %s: run `twinvisor passwd NAME`", self.users_file
            )
            raise _NoUsers(
                "The dashboard has no users yet: run `twinvisor passwd NAME` on the server."
            ) from None
        except (OSError, auth.UsersFileError, UnicodeDecodeError) as e:
            log.error("dashboard: cannot read users file: %s", e)
            raise _NoUsers(
                "The dashboard's users file cannot be read: see twinvisor.log on the server."
            ) from None
        user = users.get(name)
        if user is None:
            auth.check_password(password, auth.hash_password("x"))  # same time either way
            return None
        return user if auth.check_password(password, user.password_hash) else None

    async def logout(self, req: Request) -> Response:
        self.sessions.drop(_cookie(req.headers, COOKIE))
        gone = f"{COOKIE}=; HttpOnly; SameSite=Strict; Path=/; Max-Age=0"
        return Response(200, {"ok": True}, (("set-cookie", gone),))


def _read_log(path: str | None, offset: int) -> tuple[str, int]:
    """What the log has after `offset` (at most MAX_LOG_CHUNK); offset -1: its last chunk.
    A file smaller than the offset was rotated or truncated: read it from the start."""
    if path is None:
        return "", 0
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if offset < 0:
                offset = max(0, size - MAX_LOG_CHUNK)
            elif offset > size:
                offset = 0
            f.seek(offset)
            data = f.read(MAX_LOG_CHUNK)
    except OSError:
        return "", 0
    return data.decode("utf-8", "replace"), offset + len(data)
