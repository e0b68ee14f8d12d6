"""Host specs, hosts files, the ssh command line, the argv forwarded, and the reasons given."""

from __future__ import annotations

from pathlib import Path

import pytest

from twinvisor.cli.app import build_parser
from twinvisor.cli.remote import forwarded_args
from twinvisor.cli.remote_hosts import Target, parse_host, read_hosts_file, ssh_argv
from twinvisor.cli.remote_outcome import diagnose, exit_code


@pytest.mark.parametrize(
    ("spec", "name", "destination", "port"),
    [
        ("ssh://web1", "web1", "web1", None),
        ("ssh://ops@web1:2222", "ops@web1:2222", "ops@web1", 2222),
        ("ssh://ops@10.0.0.5:22/", "ops@10.0.0.5:22", "ops@10.0.0.5", 22),
        ("ssh://[::1]:2200", "[::1]:2200", "::1", 2200),
        ("root@web-2.example.com", "root@web-2.example.com", "root@web-2.example.com", None),
        ("db:2022", "db:2022", "db", 2022),
    ],
)
def test_parse_host(spec: str, name: str, destination: str, port: int | None) -> None:
    assert parse_host(spec) == Target(name, destination, port, "twinvisor")


@pytest.mark.parametrize(
    ("spec", "why"),
    [
        ("-oProxyCommand=x", "bad host name"),  # would be an ssh option
        ("ssh://-x", "bad host name"),
        ("ssh://-l@h", "bad user name"),
        ("http://h", "only ssh://"),
        ("ssh://h:0", "bad port"),
        ("ssh://h:99999", "bad port"),
        ("ssh://h:x", "bad port"),
        ("ssh://::1", "brackets"),
        ("ssh://a b", "bad host name"),
        ("", "bad host name"),
    ],
)
def test_parse_host_refuses(spec: str, why: str) -> None:
    with pytest.raises(ValueError, match=why):
        parse_host(spec)


def test_hosts_file_lines_comments_and_own_commands(tmp_path: Path) -> None:
    path = tmp_path / "hosts"
    path.write_text("# fleet\n\nweb1\n ssh://ops@web2:2222\tsudo -n twinvisor  # db next\n")
    assert read_hosts_file(str(path), "tv") == [
        Target("web1", "web1", None, "tv"),
        Target("ops@web2:2222", "ops@web2", 2222, "sudo -n twinvisor"),
    ]
    path.write_text("web1\nhttp://x\n")
    with pytest.raises(ValueError, match=f"{path}:2: 'http://x': only ssh://"):
        read_hosts_file(str(path), "tv")
    path.write_text("# nobody\n")
    with pytest.raises(ValueError, match="names no host"):
        read_hosts_file(str(path), "tv")
    with pytest.raises(ValueError, match="cannot read hosts file"):
        read_hosts_file(str(tmp_path / "missing"), "tv")


def test_ssh_argv_quotes_arguments_for_the_remote_shell() -> None:
    target = parse_host("ssh://ops@web1:2222", "/opt/tv/bin/twinvisor")
    argv = ssh_argv(["ssh", "-F", "cfg"], target, ["logs", "a b", "$(x)"], batch=True)
    assert argv == [
        "ssh", "-F", "cfg", "-o", "BatchMode=yes", "-o", "ConnectTimeout=10",
        "-p", "2222", "--", "ops@web1", "/opt/tv/bin/twinvisor logs 'a b' '$(x)'",
    ]  # fmt: skip
    assert ssh_argv(["ssh"], parse_host("h"), ["status"], batch=False) == [
        "ssh", "--", "h", "twinvisor status",
    ]  # fmt: skip


@pytest.mark.parametrize(
    ("argv", "forwarded"),
    [
        (["-H", "h", "status"], ["status"]),
        (["-Hh", "--json", "status", "web"], ["--json", "status", "web"]),
        (["--host=h", "-c", "x.toml", "restart", "all"], ["-c", "x.toml", "restart", "all"]),
        (["--hosts", "f", "--ssh", "ssh -F c", "--parallel", "3", "logs", "w", "-n", "5"],
         ["logs", "w", "-n", "5"]),
        (["--remote", "tv", "-H", "h", "--timeout", "5", "stop", "-c", "y", "w"],
         ["--timeout", "5", "stop", "-c", "y", "w"]),
    ],
)  # fmt: skip
def test_forwarded_args_drop_only_the_remote_options(argv: list[str], forwarded: list[str]) -> None:
    parser = build_parser()
    parser.parse_args(argv)
    assert forwarded_args(parser, argv) == forwarded


def test_reasons_from_exit_codes_and_ssh_messages() -> None:
    def reason(rc: int, err: str = "") -> str | None:
        return diagnose(rc, err, "twinvisor").reason

    assert reason(0) is None
    assert reason(255, "ssh: connect to host h port 22: Connection refused") == (
        "unreachable (connection refused)"
    )
    assert reason(255, "ssh: Could not resolve hostname nope: Name or service not known") == (
        "unreachable (unknown host name)"
    )
    assert reason(255, "ops@h: Permission denied (publickey).") == (
        "permission denied (ssh authentication)"
    )
    assert reason(255, "Host key verification failed.") == "host key not trusted (see known_hosts)"
    assert reason(3, "twinvisor: no twinvisor daemon is answering") == "no daemon running"
    assert reason(1, "cannot connect to /run/tv.sock: [Errno 13] Permission denied") == (
        "permission denied"
    )
    assert "not found on the host" in str(reason(127, "sh: twinvisor: not found"))
    assert diagnose(3, "twinvisor: no daemon\n", "tv").detail == "no daemon"
    assert exit_code([diagnose(0, "", "tv"), diagnose(3, "", "tv")]) == 3
    assert exit_code([diagnose(3, "", "tv"), diagnose(255, "", "tv")]) == 1
    assert exit_code([diagnose(0, "", "tv")]) == 0
