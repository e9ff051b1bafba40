"""Run a benchmark script against another git revision of Podium, for before/after tables in
one run: the revision is checked out in a temporary worktree and put first on PYTHONPATH, so
the script (this tree's copy) imports that revision's ``podium``."""

from __future__ import annotations

import os
import subprocess
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def run_at_revision(revision: str, script: Path, args: list[str]) -> str:
    """The standard output of ``python script args`` with ``podium`` from ``revision``."""
    with tempfile.TemporaryDirectory() as tmp:
        tree = Path(tmp) / "tree"
        subprocess.run(
            ["git", "-C", str(ROOT), "worktree", "add", "--detach", str(tree), revision],
            check=True,
            capture_output=True,
        )
        try:
            out = subprocess.run(
                [sys.executable, str(script), *args],
                env={**os.environ, "PYTHONPATH": f"{tree}{os.pathsep}{ROOT}"},
                check=True,
                stdout=subprocess.PIPE,
                text=True,
            )
        finally:
            subprocess.run(
                ["git", "-C", str(ROOT), "worktree", "remove", "--force", str(tree)], check=True
            )
    return out.stdout
