"""The config lookup order: one rule (config/lookup.py), stated the same in --help and README."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.support.paths import ROOT
from twinvisor.cli.app import build_parser
from twinvisor.config.lookup import SEARCHED, ConfigNotFound, find_config


def test_lookup_order_and_what_the_error_lists(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    assert find_config("given.toml", env={"TWINVISOR_CONFIG": "env.toml"}) == "given.toml"
    assert find_config(None, env={"TWINVISOR_CONFIG": "env.toml"}) == "env.toml"
    with pytest.raises(ConfigNotFound) as err:
        find_config(None, env={})
    assert err.value.tried[2:] == list(SEARCHED)
    (tmp_path / "twinvisor.toml").write_text("")
    assert find_config(None, env={}) == "./twinvisor.toml"


def test_help_and_readme_state_the_same_order() -> None:
    help_text = " ".join(build_parser().format_help().split())
    readme = " ".join(Path(ROOT, "README.md").read_text().split())
    places = ["-c FILE", "$TWINVISOR_CONFIG", *SEARCHED]
    for text in (help_text, readme):
        at = text.find("-c FILE")
        for place in places:  # each one after the one before: this order
            at = text.find(place.removeprefix("./"), at)
            assert at >= 0, (place, text[:300])
    assert re.search(r"error lists each place tried", readme)
