"""`atelier up --auth`: the whole stack with access control on, as a lab would run it on one machine.
The first admin works from the token `atelier up` leaves in the home, its services write the audit
log with their own tokens, and a user without a role in a project is refused."""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.e2e.test_stack import atelier

pytestmark = pytest.mark.timeout(300)


@pytest.fixture
def stack(tmp_path: Path) -> Iterator[Path]:
    home = tmp_path / "home"
    started = atelier(home, "up", "--detach", "--base-port", "0", "--auth", timeout=180)
    assert started.returncode == 0, started.stdout + started.stderr
    assert "access control on" in started.stdout
    yield home
    atelier(home, "down")
    assert not (home / "run" / "service-tokens.json").exists()


def test_the_stack_with_access_control_on(stack: Path, tmp_path: Path) -> None:
    home = stack
    assert stat.S_IMODE(os.stat(home / "credentials").st_mode) == 0o600
    assert json.loads(atelier(home, "whoami", "--json").stdout)["principal"] == "users/admin"

    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("hello")
    pushed = atelier(home, "data", "push", str(source), "notes", "--project", "vision", "--json")
    assert pushed.returncode == 0, pushed.stderr
    assert atelier(home, "iam", "users", "create", "bob").returncode == 0
    secret = json.loads(atelier(home, "iam", "tokens", "create", "bob", "--json").stdout)["secret"]

    bob_home = tmp_path / "bob"
    bob_home.mkdir()
    (bob_home / "run").symlink_to(home / "run")  # bob uses the same stack with his own credentials
    assert atelier(bob_home, "login", "--token", secret).returncode == 0
    refused = atelier(bob_home, "data", "ls", "vision/notes")
    assert refused.returncode == 1
    assert refused.stderr.startswith("error: users/bob has no role in project 'vision'")

    events = json.loads(atelier(home, "iam", "audit", "--project", "vision", "--json").stdout)
    assert {(e["service"], e["method"].rsplit("/", 1)[-1]) for e in events} >= {("data", "CreateVersion")}
