"""A real OpenSSH server for the tests: `sshd` on a free loopback port, with a throwaway host
key and a client key authorized for the current user, all in a temporary directory.

`Sshd.ssh` is the client command: `ssh -F <dir>/ssh_config`, which trusts exactly this host
key (its own known_hosts, StrictHostKeyChecking yes) and offers exactly the test key. The
config also defines the aliases `tv-good` (this server, the right key) and `tv-badkey` (this
server, a key it does not know), the way a user's ~/.ssh/config names hosts.

No sshd on the machine is a failure, not a skip: CI installs openssh-server (.ci/run).
"""

from __future__ import annotations

import contextlib
import getpass
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import psutil
import pytest

from tests.support.helpers import free_port, wait_until

SSHD_PATHS = ("/usr/sbin/sshd", "/usr/bin/sshd", "/usr/local/sbin/sshd")


@dataclass
class Sshd:
    root: str
    port: int
    user: str
    proc: subprocess.Popen[bytes]

    @property
    def ssh(self) -> str:
        """The client command, for --ssh / TWINVISOR_SSH."""
        return f"ssh -F {self.root}/ssh_config"

    @property
    def url(self) -> str:
        return f"ssh://{self.user}@127.0.0.1:{self.port}"

    def log(self) -> str:
        return Path(self.root, "sshd.log").read_text(errors="replace")

    def stop(self) -> None:
        """The listener and every session process it forked: none may outlive the test."""
        with contextlib.suppress(psutil.NoSuchProcess):
            sessions = psutil.Process(self.proc.pid).children(recursive=True)
            self.proc.terminate()
            self.proc.wait(timeout=10)
            _, alive = psutil.wait_procs(sessions, timeout=5)
            for p in alive:
                p.kill()
            psutil.wait_procs(alive, timeout=5)
        if self.proc.returncode is None:
            self.proc.kill()
            self.proc.wait()


def _sshd_binary() -> str:
    for path in SSHD_PATHS:
        if os.access(path, os.X_OK):
            return path
    found = shutil.which("sshd")
    if found is None:
        pytest.fail("no sshd: install openssh-server (the CI script does: .ci/run)")
    return found


def _keygen(path: str) -> str:
    subprocess.run(
        ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-C", "twinvisor-test", "-f", path],
        check=True,
        stdin=subprocess.DEVNULL,
    )
    return Path(path + ".pub").read_text().strip()


def _write_configs(root: str, port: int, user: str) -> None:
    host_pub = _keygen(f"{root}/host_key")
    Path(root, "authorized_keys").write_text(_keygen(f"{root}/id") + "\n")
    _keygen(f"{root}/id_wrong")
    Path(root, "known_hosts").write_text(f"[127.0.0.1]:{port} {host_pub}\n")
    Path(root, "sshd_config").write_text(
        f"ListenAddress 127.0.0.1:{port}\n"
        f"HostKey {root}/host_key\n"
        f"AuthorizedKeysFile {root}/authorized_keys\n"
        "PidFile none\nUsePAM no\nStrictModes no\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nPermitRootLogin prohibit-password\n"
        "Subsystem sftp internal-sftp\nLogLevel VERBOSE\n"
    )
    Path(root, "ssh_config").write_text(
        f"Host tv-good\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
        f"  IdentityFile {root}/id\n"
        f"Host tv-badkey\n  HostName 127.0.0.1\n  Port {port}\n  User {user}\n"
        f"  IdentityFile {root}/id_wrong\n"
        f"Host 127.0.0.1\n  IdentityFile {root}/id\n"
        f"Host *\n  UserKnownHostsFile {root}/known_hosts\n  GlobalKnownHostsFile /dev/null\n"
        "  StrictHostKeyChecking yes\n  IdentitiesOnly yes\n  BatchMode yes\n"
        "  ControlMaster no\n  LogLevel ERROR\n"
    )


def start_sshd(root: str) -> Sshd:
    binary = _sshd_binary()
    port, user = free_port(), getpass.getuser()
    _write_configs(root, port, user)
    if os.geteuid() == 0:
        os.makedirs("/run/sshd", mode=0o755, exist_ok=True)  # its privilege separation dir
    with open(f"{root}/sshd.log", "wb") as log:
        proc = subprocess.Popen(
            [binary, "-D", "-e", "-f", f"{root}/sshd_config"],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
        )
    server = Sshd(root, port, user, proc)

    def listening() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"sshd exited with {proc.returncode}:\n{server.log()}")
        return "Server listening on 127.0.0.1 port" in server.log()

    wait_until(listening, timeout=10, what="sshd listening")
    return server


@pytest.fixture(name="sshd")
def sshd_fixture() -> Iterator[Sshd]:
    root = tempfile.mkdtemp(prefix="tvssh", dir="/tmp")
    server = start_sshd(root)
    try:
        yield server
    finally:
        server.stop()
        shutil.rmtree(root, ignore_errors=True)
