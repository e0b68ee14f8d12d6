"""Run inside `unshare --mount`: make WRITABLE a tmpfs, remount / read-only, then run the rest
of the command line as uid/gid UID with no groups (setpriv), as a container runtime would with
readOnlyRootFilesystem, an emptyDir and runAsUser.

    readonly_root.py WRITABLE UID -- COMMAND...

The command's interpreter may live below a directory only root may enter (a ~root/.pyenv):
in this mount namespace only, such a directory is covered by a tmpfs holding just the way to
it, so that an unprivileged uid can run the same interpreter, as it could in an image.
"""

import os
import subprocess
import sys
from pathlib import Path


def mount(*args: str) -> None:
    subprocess.run(["mount", *args], check=True)


def expose(target: Path, scratch: Path) -> None:
    for i, parent in enumerate(reversed(target.parents)):
        if parent == Path("/") or os.stat(parent).st_mode & 0o001:
            continue  # searchable by anyone already
        child = target.relative_to(parent).parts[0]
        original = scratch / f".orig{i}"
        original.mkdir()
        mount("--bind", str(parent), str(original))
        mount("-t", "tmpfs", "-o", "mode=755", "tmpfs", str(parent))
        (parent / child).mkdir()
        mount("--rbind", str(original / child), str(parent / child))


writable, uid, sep, *command = sys.argv[1:]
assert sep == "--" and command, sys.argv
mount("--make-rprivate", "/")  # nothing leaks to the host
mount("-t", "tmpfs", "-o", "mode=1777", "tmpfs", writable)
expose(Path(os.path.realpath(sys.executable)), Path(writable))
mount("-o", "remount,bind,ro", "/")
os.execvp("setpriv", ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *command])
