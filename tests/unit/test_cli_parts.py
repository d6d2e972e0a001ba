"""The CLI builds only the part of its command tree that the command line names."""

from __future__ import annotations

import subprocess
import sys

from atelier.cli.main import command_word


def test_the_command_word_skips_options_and_the_home_value() -> None:
    assert command_word(["data", "push", "dir", "ds"]) == "data"
    assert command_word(["--home", "data", "sim", "x"]) == "sim"
    assert command_word(["--home=/tmp/h", "--help"]) is None
    assert command_word([]) is None


def test_a_data_command_does_not_import_the_other_commands() -> None:
    script = (
        "import sys; from atelier.cli.main import build; build('data'); "
        "print(sorted(m for m in sys.modules if m.startswith(('atelier.cli.', 'atelier.scheduling'))))"
    )
    loaded = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert "atelier.cli.data" in loaded
    for other in ("atelier.cli.sim", "atelier.cli.jobs", "atelier.cli.registry", "atelier.scheduling"):
        assert f"'{other}'" not in loaded


def test_help_lists_every_command() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", "--help"], capture_output=True, text=True, check=True
    ).stdout
    for command in ("up", "data", "models", "jobs", "serve", "sim", "usage", "iam", "whoami"):
        assert f" {command} " in shown
