"""Hooking twinvisor into the system: a timer that revives it, a systemd service that runs it.

`install-timer` (seed 001's install_timer.py) runs the idempotent `twinvisor -c CONFIG up
--quiet` every minute, so a daemon that died (or a machine that rebooted) comes back within a
minute: a systemd timer where systemd runs, else a crontab line. `install-service` writes a
systemd unit running the daemon in the foreground with Type=notify.

Every install is a `Plan` first (files, a crontab line, systemctl commands), so `--print` shows
exactly what an install would do. Installing twice changes nothing: crontab lines carry a
`# twinvisor:CONFIG` marker and are replaced, unit files are rewritten in place.
"""

from __future__ import annotations

import hashlib
import os
import re
import shlex
import shutil
import subprocess
import sys
from dataclasses import dataclass, field

from twinvisor.cli.export_systemd import exec_line, specifiers

__all__ = [
    "IntegrationError",
    "Plan",
    "install",
    "service_plan",
    "systemd_running",
    "timer_kind",
    "timer_plan",
    "twinvisor_command",
    "uninstall",
]

MARK = "# twinvisor:"


class IntegrationError(Exception):
    pass


@dataclass
class Plan:
    kind: str  # "cron", "systemd-timer" or "systemd-service"
    config: str
    files: list[tuple[str, str]] = field(default_factory=list)  # (path, content)
    cron_line: str | None = None
    systemctl: list[str] = field(default_factory=lambda: ["systemctl"])
    enable: str | None = None  # unit enabled (and started) by install, if any
    instructions: list[str] = field(default_factory=list)

    def describe(self) -> str:
        if self.cron_line is not None:
            return f"crontab line (for user {_user()}):\n{self.cron_line}"
        out: list[str] = []
        for path, text in self.files:
            out += [f"# {path}", text]
        steps = [shlex.join([*self.systemctl, "daemon-reload"])]
        if self.enable:
            steps.append(shlex.join([*self.systemctl, "enable", "--now", self.enable]))
        out += ["then:", *(f"  {s}" for s in steps), *self.instructions]
        return "\n".join(out)

    def describe_removal(self) -> str:
        if self.cron_line is not None:
            return f"would remove the crontab lines marked {MARK}{self.config}"
        steps = []
        if self.enable:
            steps.append(shlex.join([*self.systemctl, "disable", "--now", self.enable]))
        steps += [f"rm -f {shlex.quote(p)}" for p, _ in self.files]
        steps.append(shlex.join([*self.systemctl, "daemon-reload"]))
        return "\n".join(steps)


def _user() -> str:
    import pwd

    try:
        return pwd.getpwuid(os.geteuid()).pw_name
    except KeyError:
        return str(os.geteuid())


# ---- what to run --------------------------------------------------------------------------------


def twinvisor_command() -> list[str]:
    """An absolute command line that runs this twinvisor, whatever the PATH of cron is."""
    argv0 = sys.argv[0] if sys.argv else ""
    if os.path.basename(argv0) == "twinvisor" and os.path.isfile(argv0):
        return [os.path.abspath(argv0)]
    beside = os.path.join(os.path.dirname(sys.executable), "twinvisor")
    if os.access(beside, os.X_OK):
        return [beside]
    return [os.path.abspath(sys.executable), "-m", "twinvisor"]


def systemd_running() -> bool:
    """Whether systemd is the init system here (sd_booted(3)'s test, then systemctl's word)."""
    if os.path.isdir("/run/systemd/system"):
        return True
    systemctl = shutil.which("systemctl")
    if systemctl is None:
        return False
    try:
        state = subprocess.run(
            [systemctl, "is-system-running"], capture_output=True, text=True, timeout=10
        ).stdout.strip()
    except (OSError, subprocess.TimeoutExpired):
        return False
    return state in ("running", "degraded", "starting", "initializing", "maintenance")


def timer_kind(requested: str | None) -> str:
    if requested:
        return requested
    return "systemd" if systemd_running() else "cron"


def _stem(config: str) -> str:
    """A unit name per config: twinvisor-<dir>-<hash>, so two configs never share a unit."""
    base = os.path.basename(os.path.dirname(config)) or "root"
    safe = re.sub(r"[^A-Za-z0-9_.-]", "_", base)[:32]
    digest = hashlib.sha256(config.encode()).hexdigest()[:8]
    return f"twinvisor-{safe}-{digest}"


def _unit_dir(user: bool) -> str:
    if not user:
        return "/etc/systemd/system"
    config_home = os.environ.get("XDG_CONFIG_HOME") or os.path.expanduser("~/.config")
    return os.path.join(config_home, "systemd", "user")


def _check_path(config: str) -> None:
    if any(c in config for c in "\n\r\0"):
        raise IntegrationError(f"config path {config!r} contains a line break")


# ---- plans --------------------------------------------------------------------------------------


def timer_plan(kind: str, config: str, twinvisor: list[str]) -> Plan:
    _check_path(config)
    up = [*twinvisor, "-c", config, "up", "--quiet"]
    if kind == "cron":
        # % ends the command in a crontab line: escape it; the marker is a shell comment
        command = " ".join(shlex.quote(a) for a in up).replace("%", "\\%")
        line = f"* * * * * {command} >/dev/null 2>&1 {MARK}{config}"
        return Plan("cron", config, cron_line=line)
    return _systemd_timer_plan(config, up)


def _systemd_timer_plan(config: str, up: list[str]) -> Plan:
    user = os.geteuid() != 0
    stem = _stem(config)
    directory = _unit_dir(user)
    service = "\n".join(
        [
            "[Unit]",
            f"Description=twinvisor up for {specifiers(config)} (revives the daemon)",
            "",
            "[Service]",
            "Type=oneshot",
            f"ExecStart={exec_line(up)}",
            # `up` starts the daemon in the background: it must outlive this oneshot unit
            "KillMode=process",
            "",
        ]
    )
    timer = "\n".join(
        [
            "[Unit]",
            f"Description=run twinvisor up for {specifiers(config)} every minute",
            "",
            "[Timer]",
            "OnBootSec=30s",
            "OnUnitActiveSec=1min",
            "AccuracySec=5s",
            f"Unit={stem}-up.service",
            "",
            "[Install]",
            "WantedBy=timers.target",
            "",
        ]
    )
    return Plan(
        "systemd-timer",
        config,
        files=[
            (os.path.join(directory, f"{stem}-up.service"), service),
            (os.path.join(directory, f"{stem}-up.timer"), timer),
        ],
        systemctl=["systemctl", "--user"] if user else ["systemctl"],
        enable=f"{stem}-up.timer",
    )


def service_plan(config: str, twinvisor: list[str], user: bool) -> Plan:
    _check_path(config)
    stem = _stem(config)
    systemctl = ["systemctl", "--user"] if user else ["systemctl"]
    lines = [
        "[Unit]",
        f"Description=twinvisor process supervisor for {specifiers(config)}",
    ]
    if not user:
        lines += ["After=network-online.target", "Wants=network-online.target"]
    lines += [
        "",
        "[Service]",
        "Type=notify",
        # READY=1 comes from the supervisor, a child of the guard (the main process)
        "NotifyAccess=all",
        # the supervisor gives each program generation a cgroup leaf below its own
        "Delegate=yes",
        f"ExecStart={exec_line([*twinvisor, '-c', config, 'up', '--foreground'])}",
        # SIGTERM to the daemon only: it stops its programs in order; SIGKILL to all at the end
        "KillMode=mixed",
        "Restart=on-failure",
        "RestartSec=1s",
        "TimeoutStopSec=120s",
        "",
        "[Install]",
        f"WantedBy={'default.target' if user else 'multi-user.target'}",
        "",
    ]
    name = f"{stem}.service"
    plan = Plan(
        "systemd-service",
        config,
        files=[(os.path.join(_unit_dir(user), name), "\n".join(lines))],
        systemctl=systemctl,
    )
    plan.instructions = [
        "enable and start it with:",
        f"  {shlex.join([*systemctl, 'enable', '--now', name])}",
        "(stop a daemon started by `twinvisor up` first: only one runs per config)",
    ]
    return plan


# ---- doing it -----------------------------------------------------------------------------------


def install(plan: Plan) -> str:
    if plan.cron_line is not None:
        return _cron_install(plan)
    for path, text in plan.files:
        _write(path, text)
    written = ", ".join(p for p, _ in plan.files)
    if not systemd_running():
        steps = [shlex.join([*plan.systemctl, "daemon-reload"])]
        if plan.enable:
            steps.append(shlex.join([*plan.systemctl, "enable", "--now", plan.enable]))
        return "\n".join(
            [
                f"wrote {written}",
                "systemd does not run here; once it does:",
                *(f"  {s}" for s in steps),
                *plan.instructions[1:2],
            ]
        )
    _systemctl(plan, "daemon-reload")
    out = [f"wrote {written}", "systemd reloaded"]
    if plan.enable:
        _systemctl(plan, "enable", "--now", plan.enable)
        out.append(f"enabled and started {plan.enable}")
    return "\n".join([*out, *plan.instructions])


def uninstall(plan: Plan) -> str:
    if plan.cron_line is not None:
        return _cron_uninstall(plan)
    running = systemd_running()
    if running and plan.enable:
        _systemctl(plan, "disable", "--now", plan.enable)
    removed = []
    for path, _ in plan.files:
        try:
            os.unlink(path)
            removed.append(path)
        except FileNotFoundError:
            pass
    if running:
        _systemctl(plan, "daemon-reload")
    return f"removed {', '.join(removed)}" if removed else "nothing was installed"


def _write(path: str, text: str) -> None:
    try:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        tmp = path + ".tmp"
        with open(tmp, "w") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise IntegrationError(f"cannot write {path}: {e.strerror}") from None


def _systemctl(plan: Plan, *args: str) -> None:
    argv = [*plan.systemctl, *args]
    try:
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60)
    except (OSError, subprocess.TimeoutExpired) as e:
        raise IntegrationError(f"{shlex.join(argv)}: {e}") from None
    if done.returncode != 0:
        raise IntegrationError(f"{shlex.join(argv)} failed: {done.stderr.strip()}")


# ---- crontab ------------------------------------------------------------------------------------


def _crontab() -> str:
    crontab = shutil.which("crontab")
    if crontab is None:
        raise IntegrationError("no `crontab` command here; install cron, or use --systemd")
    return crontab


def _read_crontab() -> list[str]:
    done = subprocess.run([_crontab(), "-l"], capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        if "no crontab" in done.stderr.lower():
            return []
        raise IntegrationError(f"crontab -l failed: {done.stderr.strip()}")
    return done.stdout.splitlines()


def _write_crontab(lines: list[str]) -> None:
    text = "\n".join(lines) + "\n" if lines else ""
    done = subprocess.run([_crontab(), "-"], input=text, capture_output=True, text=True, timeout=30)
    if done.returncode != 0:
        raise IntegrationError(f"crontab - failed: {done.stderr.strip()}")


def _ours(line: str, config: str) -> bool:
    return line.rstrip().endswith(f"{MARK}{config}")


def _cron_install(plan: Plan) -> str:
    assert plan.cron_line is not None
    lines = _read_crontab()
    ours = [line for line in lines if _ours(line, plan.config)]
    if ours == [plan.cron_line]:
        return f"already installed: {plan.cron_line}"
    kept = [line for line in lines if not _ours(line, plan.config)]
    _write_crontab([*kept, plan.cron_line])
    verb = "replaced" if ours else "installed"
    return f"{verb} crontab line: {plan.cron_line}"


def _cron_uninstall(plan: Plan) -> str:
    lines = _read_crontab()
    kept = [line for line in lines if not _ours(line, plan.config)]
    if len(kept) == len(lines):
        return "nothing was installed"
    _write_crontab(kept)
    return f"removed {len(lines) - len(kept)} crontab line(s) for {plan.config}"
