"""Inference's REST v2 port checks callers exactly like its gRPC side (health stays open)."""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from atelier.iam.v1 import resources_pb2 as res
from tests.integration.iam.conftest import Iam, secured


def test_rest_v2_refuses_callers_without_a_token_and_answers_those_with_one(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, iam: Iam
) -> None:
    from services.inference.server import build
    from services.inference.settings import InferenceSettings

    address_file = tmp_path / "inference.json"
    settings = secured(InferenceSettings, tmp_path / "inference", iam, http_port=0, address_file=address_file)
    serve(lambda: build(settings))
    base = f"http://{json.loads(address_file.read_text())['http']}"
    alice = {"authorization": f"Bearer {iam.user('alice', {'vision': res.ROLE_VIEWER})}"}

    assert httpx.get(f"{base}/v2/health/live").status_code == 200
    refused = httpx.get(f"{base}/v2")
    assert refused.status_code == 401
    assert "needs credentials" in refused.json()["error"]
    assert httpx.get(f"{base}/v2", headers=alice).json()["name"]
    unknown = httpx.post(f"{base}/v2/models/nope/infer", headers=alice, json={"inputs": []})
    assert unknown.status_code == 404
    assert httpx.get(f"{base}/v2/models/nope/infer", headers=alice).status_code == 403
    assert httpx.post(f"{base}/v2/repository/models/nope/load").status_code == 401
