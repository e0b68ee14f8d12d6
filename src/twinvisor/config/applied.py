"""The last config the daemon applied, as resolved specs (not TOML: includes and env files are
already read into it). Kept in the run dir, so that a supervisor restarted while the file on
disk has errors (edited, not applied yet) runs on what was running, instead of exiting and
leaving the programs unsupervised. The file is untrusted input like everything in the run dir:
decoded against the spec types, any mismatch is an error."""

from __future__ import annotations

from dataclasses import fields, is_dataclass
from enum import Enum
from typing import Any

import msgspec

from twinvisor.config.specs import Config

FILE = "applied-config.json"
MAX_BYTES = 64 * 1024 * 1024


def path(run_dir: str) -> str:
    return f"{run_dir}/{FILE}"


def encode(config: Config) -> str:
    return msgspec.json.encode(config).decode()


def decode(raw: bytes, config_path: str, run_dir: str) -> Config:
    """Raises ValueError when it is not a config, or the config of another daemon."""
    try:
        config = msgspec.json.decode(raw, type=Config)
    except msgspec.DecodeError as e:
        raise ValueError(str(e)) from None
    if config.path != config_path or config.daemon.run_dir != run_dir:
        raise ValueError(f"it is the config of {config.path} (run dir {config.daemon.run_dir})")
    return config


def decode_fresh(raw: bytes) -> Config:
    """A config a loader child just wrote (supervisor/configload.py); ValueError if it is not
    one."""
    try:
        return msgspec.json.decode(raw, type=Config)
    except msgspec.DecodeError as e:
        raise ValueError(str(e)) from None


def _jsonable(value: Any) -> Any:
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _jsonable(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Enum):
        return value.value
    if isinstance(value, tuple | list):
        return [_jsonable(v) for v in value]
    return value


def config_to_dict(config: Config) -> dict[str, Any]:
    """The resolved config as plain JSON-able data (for `twinvisor check-config`)."""
    out: dict[str, Any] = _jsonable(config)
    for program in out["programs"]:
        program["environment"] = dict(program["environment"])  # pairs read better as a table
        program["socket_mode"] = f"{program['socket_mode']:04o}"  # as written: "0660"
    return out
