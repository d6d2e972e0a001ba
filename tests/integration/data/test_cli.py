"""The `atelier data` commands as a user runs them, against a real data service."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.integration.data.helpers import read_tree, write_tree


@pytest.fixture
def cli(serve: Callable[[Callable[[], Any]], str], tmp_path: Path) -> Callable[..., Any]:
    from services.data.server import build
    from services.data.settings import DataSettings

    address = serve(lambda: build(DataSettings(home=tmp_path / "home")))
    env = {**os.environ, "ATELIER_DATA_ADDRESS": address, "ATELIER_HOME": str(tmp_path / "home"), "USER": "ana"}

    def run(*args: str, ok: bool = True) -> Any:
        result = subprocess.run(
            [sys.executable, "-m", "atelier.cli.main", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
        if "--json" in args and ok:
            return json.loads(result.stdout)
        return result

    return run


def test_push_log_diff_tag_pull_usage(cli: Callable[..., Any], tmp_path: Path) -> None:
    files = {"images/0.png": b"\x89PNG0", "labels.csv": b"file,label\n"}
    write_tree(tmp_path / "src", files)
    first = cli("data", "push", str(tmp_path / "src"), "digits", "-m", "first", "--json")
    assert first["created"] is True
    assert first["version"]["name"] == "projects/default/datasets/digits/versions/v1"
    assert first["version"]["author"] == "ana"
    again = cli("data", "push", str(tmp_path / "src"), "digits", "--json")
    assert (again["created"], again["sentChunks"]) == (False, 0)
    write_tree(tmp_path / "src", {"labels.csv": b"file,label\n0.png,0\n"})
    cli("data", "push", str(tmp_path / "src"), "digits", "-m", "second")

    log = cli("data", "log", "digits", "--json")
    assert [v["message"] for v in log] == ["second", "first"]
    diff = cli("data", "diff", "digits@v1", "digits@v2", "--json")
    assert [(c["path"], c["kind"]) for c in diff["changes"]] == [("labels.csv", "CHANGE_KIND_MODIFIED")]
    assert "modified" in cli("data", "diff", "digits@v1", "digits@v2").stdout
    tag = cli("data", "tag", "digits@v1", "baseline", "--json")
    assert tag["version"].endswith("/v1")
    listed = cli("data", "ls", "digits@baseline", "images/", "--json")
    assert [f["path"] for f in listed] == ["images/0.png"]
    cli("data", "pull", "digits@baseline", str(tmp_path / "out"))
    assert read_tree(tmp_path / "out") == files
    usage = cli("data", "usage", "--json")
    assert usage["project"]["versionCount"] == "2"
    assert "freed" in cli("data", "gc").stdout


def test_errors_are_one_readable_line(cli: Callable[..., Any], tmp_path: Path) -> None:
    result = cli("data", "log", "nope", ok=False)
    assert result.stderr.strip() == "error: project 'default' not found"
    result = cli("data", "pull", "Bad Name@v1", str(tmp_path / "x"), ok=False)
    assert result.stderr.startswith("error: invalid dataset id 'Bad Name'")
    assert "Traceback" not in result.stderr


def test_user_text_that_looks_like_markup_is_printed_as_it_is(cli: Callable[..., Any], tmp_path: Path) -> None:
    write_tree(tmp_path / "src", {"x[/y]": b"1", "[bold]z": b"2"})
    pushed = cli("data", "push", str(tmp_path / "src"), "odd", "-m", "[/oops] not a tag")
    assert "v1" in pushed.stdout
    write_tree(tmp_path / "src", {"x[/y]": b"changed"})
    cli("data", "push", str(tmp_path / "src"), "odd", "-m", "second")

    listed = cli("data", "ls", "odd@v1").stdout
    log = cli("data", "log", "odd").stdout
    diff = cli("data", "diff", "odd@v1", "odd@v2").stdout

    assert "x[/y]" in listed
    assert "[bold]z" in listed
    assert "[/oops]" in log
    assert "x[/y]" in diff
