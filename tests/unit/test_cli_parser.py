"""The CLI builds only the sub-parsers of the verbs argv names (a `status` call should not pay
for 25 of them); what an operator sees must not change: --help and "invalid choice" list
every verb, whatever else argv holds."""

from __future__ import annotations

import pytest

from twinvisor.cli.app import _verb_names, build_parser, main


def test_a_named_verb_parses_with_its_own_arguments() -> None:
    args = build_parser(["-c", "x.toml", "status", "web", "--json"]).parse_args(
        ["-c", "x.toml", "status", "web", "--json"]
    )
    assert (args.command, args.names, args.json, args.config) == ("status", ["web"], True, "x.toml")


@pytest.mark.parametrize(
    "argv",
    [
        ["bogus"],  # no verb named: every verb's name is there to choose from
        ["-c", "status", "bogus"],  # "status" is the config's name; the verb is unknown
        ["--timeout", "1", "-c", "logs", "bogus", "stop"],  # verb names after the unknown one
    ],
)
def test_an_unknown_verb_lists_every_verb(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "invalid choice: 'bogus'" in err
    assert all(f"'{name}'" in err for name in _verb_names()), err


@pytest.mark.parametrize("flag", ["--help", "--hel", "-h"])
def test_help_lists_every_verb_even_beside_one(
    flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as e:
        main([flag, "-c", "status"])  # -c status: a verb's name in argv, but help is asked
    assert e.value.code == 0
    out = capsys.readouterr().out
    assert all(name in out for name in _verb_names()), out
    assert len(_verb_names()) == 22
