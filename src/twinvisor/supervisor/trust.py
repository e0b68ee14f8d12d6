"""Whether a process found by its tag may be adopted as a program.

The tag (TWINVISOR_RUN_DIR, TWINVISOR_PROGRAM in the environment) is what a restarted
supervisor finds its programs by when its state file has nothing for them, but any process
can put anything in its own environment: uid 65534 starting `setsid` with our tag would be
adopted, kept running and signalled by root on `down`. So a tagged process is adopted only
when its real uid (which the kernel keeps, and no process sets to another uid's without that
uid's privileges) is the one the program runs as, and never for a program the user stopped:
what the user asked for wins over whatever claims to be the program.
"""

from __future__ import annotations

import os

from twinvisor.config.specs import ProgramSpec
from twinvisor.linux import kernel


def expected_uid(spec: ProgramSpec) -> int | None:
    """The uid the program's processes run as; None when its user no longer exists."""
    if spec.user is None or os.geteuid() != 0:
        return os.geteuid()  # not root: every program runs as us (or could not start)
    if spec.user.isdigit():
        return int(spec.user)
    import pwd

    try:
        return pwd.getpwnam(spec.user).pw_uid
    except KeyError:
        return None


def refusal(spec: ProgramSpec, pid: int, desired: bool | None) -> str | None:
    """Why the tagged process `pid` must not be adopted as `spec`'s program, or None."""
    if desired is False:
        return f"{spec.name} was stopped by the user"
    uid, expected = kernel.process_real_uid(pid), expected_uid(spec)
    if uid is None or expected is None:
        return "its owner cannot be checked"
    if uid != expected:
        return f"it runs as uid {uid}, the program as uid {expected}"
    return None
