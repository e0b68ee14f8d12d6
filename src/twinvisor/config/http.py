"""`[daemon.http]`: the optional TCP listener (off unless this table is there).

    [daemon.http]
    listen = "127.0.0.1:9180"   # ":9180" is loopback too; name an address to listen elsewhere
    open_metrics = false        # true: GET /metrics without a credential (for Prometheus)

Without a credential only `GET /health` answers there (and `/metrics` when open_metrics is
true); every other route is refused, so turning the listener on exposes no control verb.
"""

from __future__ import annotations

from typing import Any

import msgspec

from twinvisor.config.locate import Problems, Source
from twinvisor.config.specs import HttpSpec
from twinvisor.config.values import check_table, listen_addr_problem
from twinvisor.config.values import show as _show


class _HttpTable(msgspec.Struct, forbid_unknown_fields=True):
    listen: str = "127.0.0.1:9180"
    open_metrics: bool = False


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
    return HttpSpec(listen=listen, open_metrics=http.open_metrics)
