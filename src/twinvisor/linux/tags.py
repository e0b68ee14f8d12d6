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
from dataclasses import dataclass

RUN_DIR = "TWINVISOR_RUN_DIR"
PROGRAM = "TWINVISOR_PROGRAM"
GENERATION = "TWINVISOR_GENERATION"


def spawn_tag(run_dir: str) -> dict[str, str]:
    """The environment entries a new generation gets (TWINVISOR_PROGRAM is set with the rest
    of the program's environment)."""
    # secrets.token_hex reads os.urandom too; secrets would bring hmac, hashlib and random
    return {RUN_DIR: run_dir, GENERATION: os.urandom(8).hex()}


@dataclass(frozen=True)
class Tagged:
    name: str
    pid: int
    start_ticks: int | None  # /proc start time, in clock ticks since boot
    create_time: float  # wall clock, for uptime
    generation: str | None  # None: spawned by a twinvisor older than the generation id
    session_leader: bool
    parent_tagged: bool  # its parent carries a program tag of this run dir too


def scan(run_dir: str, exclude: set[int]) -> list[Tagged]:
    """Every live process tagged with `run_dir` (our own pid and `exclude` left out)."""
    import psutil

    from twinvisor.linux import kernel

    found = []
    for p in psutil.process_iter(["pid", "ppid"]):
        if p.pid in exclude or p.pid == os.getpid():
            continue
        try:
            env = p.environ()
            if env.get(RUN_DIR) != run_dir or PROGRAM not in env:
                continue
            leader = os.getsid(p.pid) == p.pid
            found.append(
                Tagged(
                    env[PROGRAM],
                    p.pid,
                    kernel.process_start_time(p.pid),
                    p.create_time(),
                    env.get(GENERATION),
                    leader,
                    _is_tagged(p.info["ppid"], run_dir),
                )
            )
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to read
    return [t for t in found if not kernel.is_zombie(t.pid)]


def _is_tagged(pid: int | None, run_dir: str) -> bool:
    import psutil

    if not pid:
        return False
    try:
        env = psutil.Process(pid).environ()
    except (psutil.Error, OSError):
        return False
    # both keys: the guard may carry TWINVISOR_RUN_DIR (a user may set it), never
    # TWINVISOR_PROGRAM, which only programs and what they start inherit
    return env.get(RUN_DIR) == run_dir and PROGRAM in env


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
