"""cli/quick.py reads a plain `status` command line exactly as argparse does, or not at all.

Generated command lines from the tokens a `status` call is made of (and some it must leave to
argparse): wherever the quick reader answers, argparse (the whole parser, as `main` builds it)
gives the same fields; wherever argparse refuses a line, the quick reader gave it back."""

from __future__ import annotations

import argparse
import contextlib
import io

from hypothesis import given, settings
from hypothesis import strategies as st

from twinvisor.cli.app import build_parser
from twinvisor.cli.quick import status_args

TOKENS = [
    "status",
    "start",
    "web",
    "worker:1",
    "-c",
    "--config",
    "--config=a.toml",
    "-ca.toml",
    "--conf",
    "--socket",
    "--socket=/run/x.sock",
    "--timeout",
    "--timeout=2.5",
    "3",
    "x",
    "-1",
    "--json",
    "--watch",
    "-H",
    "--help",
    "--",
    "",
]


def _argparse(argv: list[str]) -> argparse.Namespace | None:
    quiet = io.StringIO()
    with contextlib.redirect_stderr(quiet), contextlib.redirect_stdout(quiet):
        try:
            return build_parser(argv).parse_args(argv)
        except SystemExit:
            return None


def _fields(ns: object) -> dict[str, object]:
    return {k: v for k, v in vars(ns).items() if k != "func"}


@settings(max_examples=400, deadline=None)
@given(st.lists(st.sampled_from(TOKENS), max_size=7))
def test_quick_answers_only_what_argparse_reads_the_same(argv: list[str]) -> None:
    quick = status_args(argv, {})
    if quick is None:
        return  # argparse reads it: nothing to compare (the other tests check it is used)
    full = _argparse(argv)
    assert full is not None, f"argparse refuses {argv!r}, quick read {vars(quick)}"
    assert _fields(quick) == _fields(full), argv


def test_the_lines_scripts_use_are_read_quickly() -> None:
    for argv in (
        ["status"],
        ["-c", "a.toml", "status"],
        ["status", "web", "worker:1"],
        ["--config=a.toml", "status", "web", "--timeout", "5", "--socket", "/s"],
    ):
        quick = status_args(argv, {})
        assert quick is not None, argv
        full = _argparse(argv)
        assert full is not None and _fields(quick) == _fields(full), argv


def test_other_lines_go_to_argparse() -> None:
    for argv in (
        ["status", "--json"],
        ["status", "--watch"],
        ["status", "--help"],
        ["-H", "web1", "status"],
        ["status", "--timeout", "soon"],
        ["status", "-c"],
        ["status", "a", "--timeout", "1", "b"],
        ["start", "web"],
        [],
    ):
        assert status_args(argv, {}) is None, argv


def test_twinvisor_host_in_the_environment_goes_to_argparse() -> None:
    assert status_args(["status"], {"TWINVISOR_HOST": "web1"}) is None
