"""The dashboard's route table, known before the dashboard is built (control/ui_table.py),
is the dashboard's own: the same routes in the same order, each with its handler."""

from __future__ import annotations

from typing import cast

import pytest

from twinvisor.control.dashboard import Dashboard
from twinvisor.control.server import Router
from twinvisor.control.ui_table import ui_routes
from twinvisor.supervisor.runtime import Runtime


@pytest.mark.parametrize("trusted", [True, False])
def test_the_table_is_the_dashboards(trusted: bool) -> None:
    runtime = cast(Runtime, object())  # only kept by the constructor: no handler runs here
    dashboard = Dashboard(runtime, None, trusted=trusted)
    assert [(m, p) for m, p, _ in dashboard.routes()] == ui_routes(trusted=trusted)
    router = Router()
    dashboard.add_routes(router)  # no pattern clashes with another
    assert ("POST", "/login") in ui_routes(trusted=False)
    assert ("POST", "/login") not in ui_routes(trusted=True)
