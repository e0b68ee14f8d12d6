"""Which config file a command uses: the one lookup order, shared by every verb, `--help`,
the "not found" error and the README.

1. `-c FILE`, 2. `$TWINVISOR_CONFIG`, 3. `./twinvisor.toml`, 4. `/etc/twinvisor/twinvisor.toml`.
The first one given (1, 2) or existing (3, 4) wins. Stdlib `os` only: every CLI call runs this.
"""

from __future__ import annotations

import os

CONFIG_ENV = "TWINVISOR_CONFIG"
SEARCHED = ("./twinvisor.toml", "/etc/twinvisor/twinvisor.toml")
ORDER_TEXT = f"-c FILE, then ${CONFIG_ENV}, then {', then '.join(SEARCHED)}"


class ConfigNotFound(Exception):
    """No config given and none at the searched places; the message lists what was tried."""

    def __init__(self, tried: list[str]) -> None:
        self.tried = tried
        super().__init__(
            "no config file found; tried: " + ", ".join(tried) + " (give one with -c FILE)"
        )


def find_config(arg: str | None, env: dict[str, str] | None = None) -> str:
    """The config path to use; a path given explicitly is returned even if it does not
    exist (the loader then says it cannot be read, naming it)."""
    environ = os.environ if env is None else env
    if arg:
        return arg
    from_env = environ.get(CONFIG_ENV)
    if from_env:
        return from_env
    for candidate in SEARCHED:
        if os.path.exists(candidate):
            return candidate
    raise ConfigNotFound(["-c (not given)", f"${CONFIG_ENV} (not set)", *SEARCHED])
