"""`atelier login|whoami|iam ...` as people run them, against an IAM service and a data service with
auth on: an admin makes a user and a token, the user logs in, pushes data, and an outsider is refused."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.iam.conftest import Iam, secured


@pytest.fixture
def cli(serve: Callable[[Callable[[], Any]], str], tmp_path: Path, iam: Iam) -> Callable[..., Any]:
    from services.data.server import build
    from services.data.settings import DataSettings

    settings = secured(DataSettings, tmp_path / "data", iam, object_store=str(tmp_path / "objects"))
    address = serve(lambda: build(settings))
    base = {**os.environ, "ATELIER_DATA_ADDRESS": address, "ATELIER_IAM_ADDRESS": iam.address}
    base.pop("ATELIER_TOKEN", None)

    def run(*args: str, home: str = "admin", ok: bool = True, stdin: str = "") -> Any:
        env = {**base, "ATELIER_HOME": str(tmp_path / home)}
        result = subprocess.run(
            [sys.executable, "-m", "atelier.cli.main", *args],
            env=env,
            input=stdin,
            capture_output=True,
            text=True,
            timeout=60,
        )
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
        if "--json" in args and ok:
            return json.loads(result.stdout)
        return result

    return run


def test_an_admin_adds_a_user_who_logs_in_and_works_while_an_outsider_is_refused(
    cli: Callable[..., Any], iam: Iam, tmp_path: Path
) -> None:
    cli("login", stdin=iam.admin_token + "\n")
    assert cli("whoami", "--json")["principal"] == "users/admin"
    cli("iam", "users", "create", "alice", "--display-name", "Alice")
    cli("iam", "users", "create", "mallory")
    cli("data", "push", str(Path(__file__).parent), "scratch", "--project", "vision")  # creates the project
    cli("iam", "members", "add", "vision", "alice", "--role", "member")
    assert [m["principal"] for m in cli("iam", "members", "ls", "vision", "--json")] == ["users/alice"]

    alice_token = cli("iam", "tokens", "create", "alice", "--name", "laptop", "--expires", "30d", "--json")["secret"]
    login = cli("login", "--token", alice_token, home="alice")
    assert "logged in as users/alice" in login.stdout
    credentials = tmp_path / "alice" / "credentials"
    assert stat.S_IMODE(os.stat(credentials).st_mode) == 0o600
    whoami = cli("whoami", home="alice").stdout
    assert "users/alice" in whoami
    assert "vision: member" in whoami

    source = tmp_path / "src"
    source.mkdir()
    (source / "a.txt").write_text("hello")
    pushed = cli("data", "push", str(source), "notes", "--project", "vision", "--json", home="alice")
    assert pushed["version"]["name"] == "projects/vision/datasets/notes/versions/v1"
    assert pushed["version"]["author"] == "alice"  # the caller, not the CLI's $USER

    mallory = cli("iam", "tokens", "create", "mallory", "--json")["secret"]
    cli("login", "--token", mallory, home="mallory")
    refused = cli("data", "ls", "vision/notes", home="mallory", ok=False)
    assert refused.stderr.startswith("error: users/mallory has no role in project 'vision'")
    assert "Traceback" not in refused.stderr

    nobody = cli("data", "ls", "vision/notes", home="nobody", ok=False)
    assert "needs credentials" in nobody.stderr

    events = cli("iam", "audit", "--project", "vision", "--json")
    assert ("users/alice", "CreateVersion") in {(e["principal"], e["method"].rsplit("/", 1)[-1]) for e in events}

    token_name = cli("iam", "tokens", "ls", "alice", "--json")[0]["name"]
    cli("iam", "tokens", "revoke", token_name)
    revoked = cli("data", "ls", "vision/notes", home="alice", ok=False)
    assert "revoked" in revoked.stderr


def test_token_options_are_checked_where_they_are_given(cli: Callable[..., Any], iam: Iam) -> None:
    cli("login", stdin=iam.admin_token + "\n")
    cli("iam", "users", "create", "carol")
    cli("data", "push", str(Path(__file__).parent), "scratch", "--project", "vision")

    scoped = cli("iam", "tokens", "create", "carol", "--project", "vision", "--json")  # 30 days by default
    unscoped_role = cli("iam", "tokens", "create", "carol", "--role", "viewer", ok=False)
    bad_role = cli("iam", "tokens", "create", "carol", "--project", "vision", "--role", "god", ok=False)
    too_long = cli("iam", "tokens", "create", "carol", "--project", "vision", "--expires", "90d", ok=False)
    unnamed = cli("iam", "tokens", "revoke", "nope", ok=False)

    assert scoped["token"]["scopeProject"] == "projects/vision"
    assert unscoped_role.stderr.startswith("error: --role limits a project-scoped token: give --project too")
    assert bad_role.stderr.startswith("error: --role 'god' is not one of")
    assert too_long.stderr.startswith("error: --expires 90d: a project-scoped token lives at most 30 days")
    assert unnamed.stderr.startswith("error: invalid token name 'nope': expected users/{user}/tokens/{token}")
