"""The supervisor's config loads, in a child process (config/child.py).

The daemon keeps only the resolved specs: the loader's modules (tomllib, the schema, the
value checks: 1.3 MiB) load in a short-lived child at start and at each `update` / `reread`
/ SIGHUP, and are gone with it (issue 16). At start-up the child is a fork of the supervisor,
made before the event loop or any thread exists: it has the interpreter and msgspec loaded
already, so start-up costs what an in-process load did (a new interpreter was 90 ms more for
200 programs, measured). A reload runs a new interpreter instead (forking a process with an
event loop and threads is not safe). The child runs with our environment and working
directory, so `${VAR}`, env files and relative includes resolve as they would here; what it
answers is decoded against the spec types like any untrusted input. A child that dies,
hangs or answers nonsense is a ConfigError naming the file and what happened: nothing is
applied.
"""

from __future__ import annotations

import os
import select
import signal
import subprocess
import sys
import time

import msgspec

from twinvisor.config.specs import Config
from twinvisor.errors import ConfigError, ConfigProblem

TIMEOUT = 60.0  # s; a loader that takes longer is stuck (a FIFO as include, an NFS hang)


class _Answer(msgspec.Struct):
    config: Config | None = None
    problems: list[tuple[str, int | None, str, str]] = []


def _argv(path: str) -> list[str]:
    return [sys.executable, "-m", "twinvisor.config.child", path]


def load_config(path: str) -> Config:
    """Read, include, validate, in a fork of this process: only at start-up, while the
    process has one thread and no event loop."""
    read_end, write_end = os.pipe()
    try:
        pid = os.fork()
    except OSError as e:
        os.close(read_end)
        os.close(write_end)
        raise _failed(path, f"cannot start the config loader: {e}") from None
    if pid == 0:  # the child: answer, and leave without running the parent's cleanups
        os.close(read_end)
        _answer_and_exit(path, write_end)
    os.close(write_end)
    try:
        out = _read_until_eof(read_end, time.monotonic() + TIMEOUT)
    finally:
        os.close(read_end)
    if out is None:
        os.kill(pid, signal.SIGKILL)
    _, status = os.waitpid(pid, 0)
    if out is None:
        raise _failed(path, f"the config loader took longer than {TIMEOUT:.0f} s")
    return _result(path, os.waitstatus_to_exitcode(status), out, b"")


def _answer_and_exit(path: str, fd: int) -> None:
    status = 70  # EX_SOFTWARE: the answer could not be made (the parent says so)
    try:
        from twinvisor.config.child import answer

        data = memoryview(answer(path))
        while data:
            data = data[os.write(fd, data) :]
        status = 0
    except BaseException:
        import traceback

        traceback.print_exc()  # to our stderr, the supervisor's (twinvisor.out)
    finally:
        os._exit(status)


def _read_until_eof(fd: int, deadline: float) -> bytes | None:
    """All the child writes, or None at the deadline."""
    chunks: list[bytes] = []
    while True:
        left = deadline - time.monotonic()
        if left <= 0:
            return None
        ready, _, _ = select.select([fd], [], [], left)
        if not ready:
            continue
        chunk = os.read(fd, 1 << 20)
        if not chunk:
            return b"".join(chunks)
        chunks.append(chunk)


async def load_config_async(path: str) -> Config:
    """load_config without blocking the event loop (`update`, `reread`, SIGHUP)."""
    # here, not at the top: entry.py imports this before asyncio, which it imports its own
    # way (without ssl: service/entry._import_asyncio)
    import asyncio

    try:
        proc = await asyncio.create_subprocess_exec(
            *_argv(path),
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
    except OSError as e:
        raise _failed(path, f"cannot start the config loader: {e}") from None
    try:
        out, err = await asyncio.wait_for(proc.communicate(), TIMEOUT)
    except TimeoutError:
        proc.kill()
        await proc.wait()
        raise _failed(path, f"the config loader took longer than {TIMEOUT:.0f} s") from None
    assert proc.returncode is not None
    return _result(path, proc.returncode, out, err)


def _result(path: str, status: int, out: bytes, err: bytes) -> Config:
    try:
        answer = msgspec.json.decode(out, type=_Answer)
    except msgspec.DecodeError:
        answer = None
    if answer is not None and answer.problems:
        raise ConfigError([ConfigProblem(*p) for p in answer.problems])
    if answer is None or answer.config is None:
        lines = err.decode("utf-8", "backslashreplace").strip().splitlines()
        why = lines[-1] if lines else "no answer (see twinvisor.out)"
        raise _failed(path, f"the config loader failed (exit status {status}): {why}")
    return answer.config


def _failed(path: str, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(path, None, "", message)])
