"""Finding a copy of a program that already runs outside of twinvisor (seed 001's search).

Three ways to recognise it, chosen per program with the `find` key:

  cmdline  the process's argv is the program's command: the executable is the same file
           (resolved through PATH / the working directory, or the process's own exe), and every
           argument is equal or names the same file (a script path relative to `directory`
           equals an absolute one). Precise; the default of `twinvisor find`.
  cwd      the process works in the program's `directory` and its name (or argv[0] / argv[1])
           is the program's: seed 001's lsof_cwd / proc_cwd. For an interpreter (python3,
           node, sh...) the script's name is what must match, not the interpreter's.
  exe      the process's executable is the program's (seed 001's proc_exe). For an
           interpreted program this finds every process of that interpreter: prefer cmdline.

Everything goes through psutil (no `lsof` needed). Processes that cannot be inspected (other
users' when not root), zombies, kernel threads, this process and its ancestors are skipped.
A `Match` carries the start time (/proc field 22) so the pid can be verified again before any
signal is sent to it.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Collection, Iterator
from dataclasses import dataclass
from typing import Any

import psutil

from twinvisor.config.specs import ProgramSpec
from twinvisor.linux.kernel import process_start_time

__all__ = ["MODES", "Match", "find_matches", "resolve_program"]

MODES = ("cmdline", "cwd", "exe")

# programs that run a script named by their first non-option argument
_INTERPRETERS = (
    "python",
    "pypy",
    "node",
    "nodejs",
    "deno",
    "bun",
    "ruby",
    "perl",
    "php",
    "sh",
    "bash",
    "dash",
    "zsh",
    "lua",
    "java",
    "Rscript",
)


@dataclass(frozen=True)
class Match:
    pid: int
    start_time: int | None  # clock ticks since boot: compare before signalling the pid
    reason: str  # why this process was taken for the program
    cmdline: tuple[str, ...]

    def to_dict(self) -> dict[str, Any]:
        return {
            "pid": self.pid,
            "start_time": self.start_time,
            "reason": self.reason,
            "cmdline": list(self.cmdline),
        }


def find_matches(
    spec: ProgramSpec, mode: str, exclude_pids: Collection[int] = frozenset()
) -> list[Match]:
    """Running processes that look like `spec` by `mode`, in pid order."""
    if mode not in MODES:
        raise ValueError(f"unknown find mode {mode!r}; expected one of {', '.join(MODES)}")
    skip = set(exclude_pids) | _self_and_ancestors()
    test = {"cmdline": _by_cmdline, "cwd": _by_cwd, "exe": _by_exe}[mode]
    target = _Target.of(spec)
    found: list[Match] = []
    for proc, argv in _candidates(skip):
        try:
            reason = test(target, proc, argv)
        except (psutil.Error, OSError):
            continue  # gone meanwhile, or not ours to look at
        if reason is not None:
            found.append(Match(proc.pid, process_start_time(proc.pid), reason, argv))
    return found


def resolve_program(program: str, directory: str | None, path_env: str | None) -> str | None:
    """The real path of the executable that `program` names, as exec would find it."""
    if "/" in program:
        full = os.path.join(directory or os.getcwd(), os.path.expanduser(program))
        return os.path.realpath(full) if os.path.exists(full) else None
    found = shutil.which(program, path=path_env)
    return os.path.realpath(found) if found else None


# ---- the program we look for --------------------------------------------------------------------


@dataclass(frozen=True)
class _Target:
    command: tuple[str, ...]
    directory: str | None  # real path
    exe: str | None  # real path of command[0]
    names: tuple[str, ...]  # names a matching process may carry (cwd mode)

    @staticmethod
    def of(spec: ProgramSpec) -> _Target:
        directory = os.path.realpath(spec.directory) if spec.directory else None
        path_env = dict(spec.environment).get("PATH", os.environ.get("PATH"))
        exe = resolve_program(spec.command[0], directory, path_env)
        return _Target(spec.command, directory, exe, _program_names(spec.command))


def _is_interpreter(program: str) -> bool:
    base = os.path.basename(program)
    return any(
        base == name or base.startswith(name + ".") or _versioned(base, name)
        for name in _INTERPRETERS
    )


def _versioned(base: str, name: str) -> bool:
    """python3, python3.12, perl5.36: the name followed by a version."""
    rest = base.removeprefix(name)
    return rest != base and rest != "" and all(c.isdigit() or c == "." for c in rest)


def _script_arg(argv: tuple[str, ...]) -> str | None:
    """The script an interpreter runs: its first argument that is not an option."""
    args = iter(argv[1:])
    for arg in args:
        if arg == "-jar":
            return next(args, None)
        if arg in ("-c", "-m", "-e"):
            return None  # code or a module given inline: no script file
        if not arg.startswith("-"):
            return arg
    return None


def _program_names(command: tuple[str, ...]) -> tuple[str, ...]:
    if _is_interpreter(command[0]):
        script = _script_arg(command)
        if script:
            return (os.path.basename(script),)
    return (os.path.basename(command[0]),)


# ---- the processes ------------------------------------------------------------------------------


def _self_and_ancestors() -> set[int]:
    me = psutil.Process()
    return {me.pid, *(p.pid for p in me.parents())}


def _candidates(skip: set[int]) -> Iterator[tuple[psutil.Process, tuple[str, ...]]]:
    for proc in psutil.process_iter(["cmdline", "status", "ppid"]):
        info = proc.info
        if proc.pid in skip or proc.pid <= 2 or info["status"] == psutil.STATUS_ZOMBIE:
            continue
        if info["ppid"] == 2:  # kthreadd's children are kernel threads
            continue
        argv = tuple(info["cmdline"] or ())
        if not argv:  # kernel threads and processes we may not inspect
            continue
        yield proc, argv


def _proc_exe(proc: psutil.Process) -> str | None:
    exe = str(proc.exe() or "")
    return os.path.realpath(exe.removesuffix(" (deleted)")) if exe else None


def _resolve_arg(arg: str, cwd: str | None) -> str | None:
    """An argument that names an existing file, as a real path; None when it names none."""
    if not arg or arg.startswith("-") or cwd is None:
        return None
    full = os.path.join(cwd, os.path.expanduser(arg))
    return os.path.realpath(full) if os.path.exists(full) else None


def _head(
    target: _Target, proc: psutil.Process, argv: tuple[str, ...], cwd: str
) -> tuple[str, tuple[str, ...]] | None:
    """How the process runs the program's executable, and its arguments after it; or None.

    A script started by its path runs as `INTERPRETER [ARG] SCRIPT ARGS...` (the kernel's
    shebang handling): the script path then stands where the command's argv[0] stood.
    """
    if target.exe is not None:
        exe = _proc_exe(proc)
        if exe == target.exe:
            return f"its executable is {exe}", argv[1:]
        for k in (1, 2):
            if len(argv) > k and _resolve_arg(argv[k], cwd) == target.exe:
                return f"{exe} runs the script {target.exe}", argv[k + 1 :]
    program = target.command[0]
    if "/" not in program and os.path.basename(argv[0]) == program:
        # found through PATH, which may differ for the process (a pyenv shim, a venv)
        return f"argv[0] {argv[0]!r} is a {program!r} from PATH", argv[1:]
    return None


def _by_cmdline(target: _Target, proc: psutil.Process, argv: tuple[str, ...]) -> str | None:
    if not _could_be(target, argv):
        return None
    cwd = str(proc.cwd())
    found = _head(target, proc, argv, cwd)
    if found is None:
        return None
    head, rest = found
    if len(rest) != len(target.command) - 1:
        return None
    notes: list[str] = []
    for mine, theirs in zip(target.command[1:], rest, strict=True):
        # a file argument (the script of an interpreter) is compared as a file: relative to
        # `directory` for the program, to the process's cwd for the process
        path = _resolve_arg(mine, target.directory or os.getcwd())
        if path is None:
            if mine != theirs:
                return None
        elif path != _resolve_arg(theirs, cwd):
            return None
        elif mine != path:
            notes.append(f"{theirs!r} is {path}")
    return "cmdline matches the command: " + "; ".join([head, *notes])


def _could_be(target: _Target, argv: tuple[str, ...]) -> bool:
    """A cheap first look, before reading the process's exe and cwd: a basename in common."""
    mine = {os.path.basename(a) for a in target.command}
    return any(os.path.basename(a) in mine for a in argv[:3])


def _by_cwd(target: _Target, proc: psutil.Process, argv: tuple[str, ...]) -> str | None:
    if target.directory is None:
        return None
    names = {str(proc.name()), *(os.path.basename(a) for a in argv[:2])}
    name = next((n for n in target.names if n in names), None)
    if name is None:
        return None
    cwd = os.path.realpath(str(proc.cwd()))
    if cwd != target.directory:
        return None
    return f"works in {cwd} and is named {name!r}"


def _by_exe(target: _Target, proc: psutil.Process, argv: tuple[str, ...]) -> str | None:
    if target.exe is None:
        return None
    exe = _proc_exe(proc)
    if exe != target.exe:
        return None
    note = ""
    if _is_interpreter(target.exe):
        note = " (an interpreter: any script it runs matches; find = 'cmdline' is precise)"
    return f"its executable is {exe}{note}"
