"""The sd helper picks passed sockets by name, through the real fd placement and LISTEN_PID
trampoline."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys

from tests.support.paths import SRC
from twinvisor.linux import children, sockets


def test_listen_sockets_by_name_through_the_trampoline() -> None:
    web = socket.create_server(("127.0.0.1", 0))
    admin = socket.create_server(("127.0.0.1", 0))
    admin_port = admin.getsockname()[1]
    code = (
        "import json, os; from twinvisor import sd\n"
        "fds = sorted(map(int, os.listdir('/proc/self/fd')))\n"
        "admin = [s.getsockname()[1] for s in sd.listen_sockets('admin')]\n"
        "print(json.dumps({'fds': fds, 'admin': admin}))"
    )
    env = dict(os.environ, PYTHONPATH=str(SRC), **sockets.listen_env(["web", "admin"]))
    try:
        out = subprocess.run(
            [*children.trampoline(None, listen_pid=True), sys.executable, "-c", code],
            env=env,
            preexec_fn=sockets.place_fds([web.fileno(), admin.fileno()]),
            close_fds=False,
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
    finally:
        web.close()
        admin.close()
    seen = json.loads(out.stdout)
    assert seen["admin"] == [admin_port]  # the second passed socket, picked by its name
    assert seen["fds"][:5] == [0, 1, 2, 3, 4]  # (the next one is listdir's own)
