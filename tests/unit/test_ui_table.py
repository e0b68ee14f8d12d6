"""The dashboard's route table, known before the dashboard is built (control/ui_table.py),
is the dashboard's own: every handler it wires has a row, every row a handler."""

from __future__ import annotations

from typing import cast

import pytest

from twinvisor.control.dashboard import Dashboard
from twinvisor.control.server import Router
from twinvisor.control.ui_table import ui_routes
from twinvisor.supervisor.runtime import Runtime


def _dashboard(trusted: bool) -> Dashboard:
    runtime = cast(Runtime, object())  # only kept by the constructor: no handler runs here
    return Dashboard(runtime, None, trusted=trusted)


def test_every_wired_handler_is_in_the_table() -> None:
    assert sorted(_dashboard(trusted=False).wiring()) == sorted(ui_routes(trusted=False))


@pytest.mark.parametrize("trusted", [True, False])
def test_the_routes_are_the_tables(trusted: bool) -> None:
    dashboard = _dashboard(trusted)
    assert [(m, p) for m, p, _ in dashboard.routes()] == ui_routes(trusted=trusted)
    dashboard.add_routes(Router())  # no pattern clashes with another
    assert (("POST", "/login") in ui_routes(trusted=trusted)) is not trusted
