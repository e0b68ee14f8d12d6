"""Where things are, for tests that run files by path (children, scripts, examples, src)."""

from __future__ import annotations

from pathlib import Path

SUPPORT = Path(__file__).resolve().parent
ROOT = SUPPORT.parent.parent
SRC = ROOT / "src"
EXAMPLES = ROOT / "examples"
SCRIPTS = SUPPORT / "scripts"  # the daemon/pool library's test programs
CHILDREN = str(SUPPORT / "children.py")
SOCK_CHILDREN = str(SUPPORT / "sock_children.py")
