"""Public path of the daemon library (seed 003, xdaemon): `background()` and `Daemon(...)`.

The implementation is `twinvisor.lib.daemonize`; this module is the stable import path.
"""

from twinvisor.lib.daemonize import BackgroundProcess, Daemon, background

__all__ = ["BackgroundProcess", "Daemon", "background"]
