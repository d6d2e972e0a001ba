"""`atelier experiments|runs|models` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from atelier.client import DataClient, RegistryClient
from tests.integration.registry.helpers import trained


@pytest.fixture
def cli(stack: tuple[DataClient, RegistryClient], tmp_path: Path) -> Callable[..., Any]:
    data, registry = stack
    env = {
        **os.environ,
        "ATELIER_DATA_ADDRESS": data.address,
        "ATELIER_REGISTRY_ADDRESS": registry.address,
        "ATELIER_PROJECT": "lab",
        "USER": "ana",
    }

    def run(*args: str, ok: bool = True) -> Any:
        result = subprocess.run(
            [sys.executable, "-m", "atelier.cli.main", *args], env=env, capture_output=True, text=True, timeout=60
        )
        assert (result.returncode == 0) == ok, result.stdout + result.stderr
        return json.loads(result.stdout) if "--json" in args and ok else result

    return run


def test_runs_and_models_commands(
    stack: tuple[DataClient, RegistryClient], cli: Callable[..., Any], tmp_path: Path, digits: str
) -> None:
    data, registry = stack
    first = trained(data, registry, tmp_path, "0.1", 0.90)
    second = trained(data, registry, tmp_path, "0.01", 0.95)

    assert [e["name"] for e in cli("experiments", "ls", "--json")] == ["projects/lab/experiments/digits"]
    runs = cli("runs", "ls", "digits", "--order-by", "metrics.val_accuracy desc", "--json")
    assert [r["name"] for r in runs] == [second.lineage.run, first.lineage.run]
    compared = cli("runs", "compare", first.lineage.run, second.lineage.run)
    assert "params.lr" in compared.stdout
    assert "0.95" in compared.stdout
    alone = cli("runs", "compare", first.lineage.run, ok=False)
    assert alone.stderr.startswith("error: compare needs two or more runs; got 1")
    odd_ref = cli("models", "show", "digits@@v1", ok=False)
    assert odd_ref.stderr.startswith("error: invalid version reference '@v1' in 'digits@@v1': use vN, latest or an")
    best = cli("models", "search", "--filter", "metrics.val_accuracy > 0.92", "--json")
    assert [v["name"] for v in best] == [second.name]
    promoted = cli("models", "promote", "digits@v2", "production", "--gate", "metrics.val_accuracy > 0.9", "--json")
    assert promoted["version"] == second.name
    refused = cli(
        "models",
        "promote",
        "digits@v1",
        "production",
        "--gate",
        "metrics.val_accuracy >= current.metrics.val_accuracy",
        ok=False,
    )
    assert refused.stderr.startswith("error: refused to move digits@production (held by v2) to v1: gate failed")
    assert cli("models", "show", "digits@production", "--json")["number"] == "2"
    lineage = cli("models", "lineage", "digits@production")
    assert "trained on: projects/lab/datasets/digits/versions/v1" in lineage.stdout
    spec = cli("models", "reproduce", "digits@production", "--print")
    assert "atelier data pull projects/lab/datasets/digits/versions/v1" in spec.stdout
    assert "git checkout abc123" in spec.stdout
    assert len(cli("models", "versions", "digits", "--json")) == 2
    assert cli("models", "ls", "--json")[0]["aliases"] == {"production": second.name}
