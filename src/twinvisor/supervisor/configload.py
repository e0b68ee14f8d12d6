"""The supervisor's config loads, in a child process (config/child.py).

The daemon keeps only the resolved specs: the loader's modules (tomllib, the schema, the
value checks: 1.3 MiB) load in a short-lived child at start and at each `update` / `reread`
/ SIGHUP, and are gone with it (issue 16). The child is a new interpreter
(`python -m twinvisor.config.child`), also at start-up: a fork of the supervisor would start
quicker (the interpreter and msgspec are loaded) but would carry the supervisor's command
line, and nothing but the lock holder may look like a supervisor to `ps`, pgrep or the tests
that count supervisors. The child runs with our environment and working
directory, so `${VAR}`, env files and relative includes resolve as they would here; what it
answers is decoded against the spec types like any untrusted input. A child that dies,
hangs or answers nonsense is a ConfigError naming the file and what happened: nothing is
applied.
"""

from __future__ import annotations

import subprocess
import sys

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
    """Read, include, validate (blocking: for start-up, before the event loop runs)."""
    try:
        done = subprocess.run(
            _argv(path), stdin=subprocess.DEVNULL, capture_output=True, timeout=TIMEOUT
        )
    except subprocess.TimeoutExpired:
        raise _failed(path, f"the config loader took longer than {TIMEOUT:.0f} s") from None
    except OSError as e:
        raise _failed(path, f"cannot start the config loader: {e}") from None
    return _result(path, done.returncode, done.stdout, done.stderr)


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
        why = lines[-1] if lines else "no answer"
        raise _failed(path, f"the config loader failed (exit status {status}): {why}")
    return answer.config


def _failed(path: str, message: str) -> ConfigError:
    return ConfigError([ConfigProblem(path, None, "", message)])
