"""A second language through the front door: a Node client built from proto/ with @grpc/grpc-js and
@grpc/proto-loader (tests/node, installed by `make node`), as users' generated clients call it."""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.integration.gateway.conftest import Stack

ROOT = Path(__file__).resolve().parents[3]
CLIENT = ROOT / "tests" / "node" / "frontdoor_client.js"


@pytest.fixture
def node() -> str:
    """Node with the client's packages; fails (never skips) with what to run when they are missing."""
    found = shutil.which("node")
    if found is None:
        pytest.fail("node (20 or later) is required for the Node client test")
    if not (CLIENT.parent / "node_modules" / "@grpc" / "grpc-js").is_dir():
        pytest.fail("the Node client's packages are not installed: run `make node`")
    if not (ROOT / ".proto-deps" / "google" / "api" / "annotations.proto").is_file():
        pytest.fail("the third-party protos are missing: run `make node`")
    return found


def test_a_node_client_creates_and_reads_a_project_through_the_front_door(node: str, door: str, stack: Stack) -> None:
    result = subprocess.run(
        [node, str(CLIENT), door, "from-node"], capture_output=True, text=True, timeout=120, check=False
    )
    assert result.returncode == 0, result.stderr
    answers = json.loads(result.stdout)
    assert answers["created"]["name"] == "projects/from-node"
    assert answers["created_request_id"] == "node-1"
    assert answers["fetched"]["description"] == "from node"
    assert stack.data.get_project("projects/from-node").description == "from node"  # really stored
    assert "projects/from-node" in answers["listed"]
    assert answers["missing"]["code"] == 5  # NOT_FOUND, with the service's google.rpc.Status details
    assert "nowhere" in answers["missing"]["details"]
    assert answers["missing_has_details"] is True
