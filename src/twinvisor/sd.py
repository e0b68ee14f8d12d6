"""Public path of the library for supervised programs: systemd's socket activation and
sd_notify, which work the same under twinvisor and under systemd.

The implementation is `twinvisor.lib.sd`; this module is the stable import path.
"""

from twinvisor.lib.sd import SD_LISTEN_FDS_START, listen_fds, listen_sockets, notify

__all__ = ["SD_LISTEN_FDS_START", "listen_fds", "listen_sockets", "notify"]
