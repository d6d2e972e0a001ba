"""The contract: committed stubs match `make proto`, buf lint passes, every RPC has an HTTP rule."""

from __future__ import annotations

import filecmp
import subprocess
import sys
from pathlib import Path

import pytest
from google.api import annotations_pb2

from atelier.data.v1 import data_service_pb2
from atelier.registry.v1 import registry_service_pb2

ROOT = Path(__file__).resolve().parents[2]
SERVICE_MODULES = [data_service_pb2, registry_service_pb2]


def test_committed_stubs_match_make_proto(tmp_path: Path) -> None:
    subprocess.run([sys.executable, "scripts/gen_proto.py", "--out", str(tmp_path)], cwd=ROOT, check=True)
    generated = sorted(p.relative_to(tmp_path) for p in tmp_path.rglob("*_pb2*"))
    assert generated, "make proto generated nothing"
    generated.append(Path("atelier/proto_comments.binpb"))  # the protos' comments, for the OpenAPI document
    stale = [str(p) for p in generated if not (ROOT / p).exists() or not filecmp.cmp(tmp_path / p, ROOT / p, False)]
    committed = sorted(p.relative_to(ROOT) for p in (ROOT / "atelier").rglob("*_pb2*"))
    committed.append(Path("atelier/proto_comments.binpb"))
    assert not stale, f"stubs differ from `make proto`: {stale}; run `make proto`"
    assert committed == generated, "stubs without a proto (or protos without stubs); run `make proto`"


def test_buf_lint_is_clean() -> None:
    subprocess.run([sys.executable, "scripts/gen_proto.py", "--deps-only"], cwd=ROOT, check=True)
    buf = Path(sys.executable).parent / "buf"
    result = subprocess.run([str(buf), "lint"], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("module", SERVICE_MODULES, ids=lambda m: m.__name__)
def test_every_rpc_has_an_http_rule(module: object) -> None:
    for service in module.DESCRIPTOR.services_by_name.values():  # type: ignore[attr-defined]
        for method in service.methods:
            rule = method.GetOptions().Extensions[annotations_pb2.http]
            assert rule.WhichOneof("pattern"), f"{method.full_name} has no google.api.http annotation"
