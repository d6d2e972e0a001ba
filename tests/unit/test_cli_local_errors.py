"""A local file or directory the CLI cannot use is reported in one line naming it, not a traceback."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from atelier.cli.main import local_problem


def test_the_path_and_the_reason_in_one_line() -> None:
    assert local_problem(NotADirectoryError(20, "Not a directory", "/a/b")) == "/a/b: Not a directory"
    assert local_problem(OSError("no path here")) == "no path here"


def test_a_home_that_is_a_file(tmp_path: Path) -> None:
    home = tmp_path / "home"
    home.write_text("not a directory")
    env = {**os.environ, "ATELIER_HOME": str(home)}

    ended = subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", "up", "--detach"],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )

    assert ended.returncode == 1
    assert ended.stderr.strip() == f"error: {home}/run: Not a directory"
