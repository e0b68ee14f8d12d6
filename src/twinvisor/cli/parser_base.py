"""The ArgumentParser the command line is built from: argparse's, told the terminal's width
without `shutil`.

argparse makes a HelpFormatter for every `add_argument` (to check the metavar), and each one
asks `shutil.get_terminal_size()`; importing shutil (with fnmatch, zlib, bz2 and lzma) was
2 ms of every CLI call, `status` included, that never prints help.
"""

from __future__ import annotations

import argparse
import os
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any, NoReturn


def terminal_columns() -> int:
    """shutil.get_terminal_size().columns: $COLUMNS, else the terminal of stdout, else 80."""
    try:
        columns = int(os.environ.get("COLUMNS", "0"))
    except ValueError:
        columns = 0
    stdout = sys.__stdout__
    if columns <= 0 and stdout is not None:
        try:
            columns = os.get_terminal_size(stdout.fileno()).columns
        except (AttributeError, ValueError, OSError):  # no fileno, closed, not a terminal
            columns = 0
    return columns if columns > 0 else 80


class HelpFormatter(argparse.HelpFormatter):
    def __init__(
        self,
        prog: str,
        indent_increment: int = 2,
        max_help_position: int = 24,
        width: int | None = None,
    ) -> None:
        width = terminal_columns() - 2 if width is None else width  # as argparse sizes it
        super().__init__(prog, indent_increment, max_help_position, width)


class Partial(Exception):
    """A parser built without some verbs met an error: the whole parser must say it (its
    "invalid choice" lists every verb)."""


class ArgumentParser(argparse.ArgumentParser):
    """argparse.ArgumentParser with HelpFormatter; its sub-parsers are of this class too."""

    partial = False  # built without the verbs argv does not name: errors raise Partial

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("formatter_class", HelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> NoReturn:
        if self.partial:
            raise Partial(message)
        super().error(message)
