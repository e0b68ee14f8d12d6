"""The tag every program carries in its environment, and the scan that finds tagged processes
whatever happened to the state file and whoever their parent is now.

    TWINVISOR_RUN_DIR     the daemon the program belongs to
    TWINVISOR_PROGRAM     its instance name
    TWINVISOR_GENERATION  a random id, new for every spawn

Descendants inherit the environment, so a tag alone does not tell a program from a process it
started (say a daemon that forked twice and called setsid). The generation id does: every
process carrying it descends from the one process we spawned with it, which is therefore the
oldest of them (and leads its own session: we spawn it with setsid, and a session leader cannot
leave its session). Nothing here depends on the parent, which after a crash of both twins is
whatever subreaper caught the orphans (`systemd --user`, a container's init, PID 1).
"""

from __future__ import annotations

import os

import msgspec

from twinvisor.linux import kernel

RUN_DIR = "TWINVISOR_RUN_DIR"
PROGRAM = "TWINVISOR_PROGRAM"
GENERATION = "TWINVISOR_GENERATION"


def spawn_tag(run_dir: str) -> dict[str, str]:
    """The environment entries a new generation gets (TWINVISOR_PROGRAM is set with the rest
    of the program's environment)."""
    # secrets.token_hex reads os.urandom too; secrets would bring hmac, hashlib and random
    return {RUN_DIR: run_dir, GENERATION: os.urandom(8).hex()}


class Tagged(msgspec.Struct, frozen=True):
    name: str
    pid: int
    start_ticks: int | None  # /proc start time, in clock ticks since boot
    create_time: float  # wall clock, for uptime
    generation: str | None  # None: spawned by a twinvisor older than the generation id
    session_leader: bool
    parent_tagged: bool  # its parent carries a program tag of this run dir too


def scan(run_dir: str, exclude: set[int]) -> list[Tagged]:
    """Every live process tagged with `run_dir` (our own pid and `exclude` left out).

    Read from /proc directly, not with psutil: this runs at every start of the supervisor,
    and psutil would stay loaded for its life (about 0.9 MiB) for this one scan."""
    found = []
    me = os.getpid()
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        pid = int(entry)
        if pid in exclude or pid == me:
            continue
        env = _environ(pid)
        if env is None or env.get(RUN_DIR) != run_dir or PROGRAM not in env:
            continue
        stat = _stat(pid)
        if stat is None:
            continue  # gone meanwhile
        ppid, start_ticks = stat
        try:
            leader = os.getsid(pid) == pid
        except OSError:
            continue
        found.append(
            Tagged(
                env[PROGRAM],
                pid,
                start_ticks,
                _BOOT_TIME + start_ticks / kernel.CLK_TCK,  # as psutil's create_time computes it
                env.get(GENERATION),
                leader,
                _is_tagged(ppid, run_dir),
            )
        )
    return [t for t in found if not kernel.is_zombie(t.pid)]


def _boot_time() -> float:
    try:
        with open("/proc/stat", "rb") as f:
            for line in f:
                if line.startswith(b"btime "):
                    return float(line.split()[1])
    except (OSError, ValueError):
        pass
    return 0.0


_BOOT_TIME = _boot_time()


def _environ(pid: int) -> dict[str, str] | None:
    """The environment `pid` started with; None if gone or not ours to read."""
    try:
        with open(f"/proc/{pid}/environ", "rb") as f:
            data = f.read()
    except OSError:
        return None
    env = {}
    for item in data.split(b"\0"):
        key, sep, value = os.fsdecode(item).partition("=")
        if sep:
            env[key] = value
    return env


def _stat(pid: int) -> tuple[int, int] | None:
    """(parent pid, start time in clock ticks since boot) from /proc/PID/stat."""
    fields = kernel.stat_fields(pid)
    try:
        return (int(fields[1]), int(fields[19])) if fields else None  # fields 4 and 22
    except (IndexError, ValueError):
        return None


def _is_tagged(pid: int | None, run_dir: str) -> bool:
    if not pid:
        return False
    env = _environ(pid)
    # both keys: the guard may carry TWINVISOR_RUN_DIR (a user may set it), never
    # TWINVISOR_PROGRAM, which only programs and what they start inherit
    return env is not None and env.get(RUN_DIR) == run_dir and PROGRAM in env


def generations(found: list[Tagged]) -> list[Tagged]:
    """The programs among tagged processes, leaving out what they started: per generation id
    the oldest process, if it still leads its session (else the program itself is gone and
    what is left are its remnants). Without an id (older twinvisor): a session leader whose
    parent is not one of ours."""
    groups: dict[tuple[str, str], list[Tagged]] = {}
    legacy = []
    for t in found:
        if t.generation is None:
            if t.session_leader and not t.parent_tagged:
                legacy.append(t)
        else:
            groups.setdefault((t.name, t.generation), []).append(t)
    firsts = [min(g, key=_age_order) for g in groups.values()]
    return [t for t in firsts if t.session_leader] + legacy


def _age_order(t: Tagged) -> tuple[float, int]:
    # start ticks have a 10 ms grain: a tie goes to the lower pid (pids are handed out upwards)
    return (t.start_ticks if t.start_ticks is not None else float("inf"), t.pid)
