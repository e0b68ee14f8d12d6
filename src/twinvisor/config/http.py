"""`[daemon.http]`: the optional TCP listener (off unless this table is there).

    [daemon.http]
    listen = "127.0.0.1:9180"   # ":9180" is loopback too; name an address to listen elsewhere
    open_metrics = false        # true: GET /metrics without a credential (for Prometheus)
    dashboard = false           # true: the web dashboard, behind a login
    users_file = "dashboard.users"   # written by `twinvisor passwd` (beside the config)
    session_ttl = 3600          # seconds a dashboard session lives after its last use
    tls_cert = "cert.pem"       # both: serve HTTPS (cookies get Secure)
    tls_key = "key.pem"

Without a credential only `GET /health` answers there (and `/metrics` when open_metrics is
true); every other route is refused, so turning the listener on exposes no control verb.
"""

from __future__ import annotations

import os
from typing import Annotated, Any

import msgspec

from twinvisor.config.locate import Problems, Source
from twinvisor.config.specs import HttpSpec
from twinvisor.config.values import check_table, listen_addr_problem
from twinvisor.config.values import show as _show


class _HttpTable(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9180"
    open_metrics: bool = False
    dashboard: bool = False
    users_file: str = "dashboard.users"
    session_ttl: Annotated[float, msgspec.Meta(ge=60, le=30 * 86400)] = 3600.0
    tls_cert: str | None = None
    tls_key: str | None = None


def http_spec(root: Source, table: Any, pr: Problems) -> HttpSpec | None:
    base = ("daemon", "http")
    if table is None:
        return None
    if not isinstance(table, dict):
        return None  # the [daemon] type check reported it
    valid = check_table(table, _HttpTable, root, base, pr)
    http = msgspec.convert(valid, _HttpTable)
    listen = http.listen
    if listen.startswith(":"):
        listen = "127.0.0.1" + listen  # loopback unless an address is named
    problem = listen_addr_problem(listen)
    if problem is None and listen.startswith("unix:"):
        problem = f"{_show(listen)}: the HTTP listener is TCP (the control socket is the unix one)"
    if problem is not None:
        pr.at(root, (*base, "listen"), problem)
        return None
    if (http.tls_cert is None) != (http.tls_key is None):
        pr.at(root, base, "tls_cert and tls_key go together: set both or neither")
        return None
    here = os.path.dirname(root.path)

    def path(value: str | None) -> str | None:
        return None if value is None else os.path.join(here, os.path.expanduser(value))

    return HttpSpec(
        listen=listen,
        open_metrics=http.open_metrics,
        dashboard=http.dashboard,
        users_file=path(http.users_file) or "",
        session_ttl=http.session_ttl,
        tls_cert=path(http.tls_cert),
        tls_key=path(http.tls_key),
    )
