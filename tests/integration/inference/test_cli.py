"""`atelier serve deploy|ls|show|infer|undeploy` as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import torch

from tests.integration.inference.conftest import Platform
from tests.integration.inference.models import Affine


def atelier(platform: Platform, cwd: Path, *args: str, ok: bool = True) -> Any:
    env = {**os.environ, "ATELIER_INFERENCE_ADDRESS": platform.address, "ATELIER_PROJECT": "lab"}
    result = subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", *args], env=env, capture_output=True, text=True, timeout=120, cwd=cwd
    )
    assert (result.returncode == 0) == ok, result.stdout + result.stderr
    return json.loads(result.stdout) if "--json" in args and ok else result


def test_deploy_list_show_infer_undeploy(platform: Platform, tmp_path: Path) -> None:
    model = Affine()
    platform.register(model, torch.randn(2, 4), "affine")
    deployed = atelier(
        platform, tmp_path, "serve", "deploy", "affine@latest", "--name", "digits", "--max-batch-size", "4",
        "--preferred-batch-size", "2", "--max-queue-delay-us", "100", "--json",
    )  # fmt: skip
    assert deployed["state"] == "DEPLOYMENT_STATE_READY"
    assert deployed["modelVersion"] == "projects/lab/models/affine/versions/v1"
    assert deployed["batching"]["preferredBatchSizes"] == [2]
    listed = atelier(platform, tmp_path, "serve", "ls", "--json")
    assert [d["name"] for d in listed] == ["projects/lab/deployments/digits"]
    shown = atelier(platform, tmp_path, "serve", "show", "digits")
    assert "READY" in shown.stdout
    assert "affine@latest -> projects/lab/models/affine/versions/v1" in shown.stdout
    x = np.random.default_rng(5).standard_normal((3, 4)).astype(np.float32)
    np.save(tmp_path / "x.npy", x)
    result = atelier(platform, tmp_path, "serve", "infer", "digits", "--input", "x.npy", "--json")
    with torch.no_grad():
        expected = model(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(np.array(result["output"]["data"], dtype=np.float32), expected, rtol=1e-6)
    named = atelier(platform, tmp_path, "serve", "infer", "digits", "-i", "input=x.npy", "--json")
    assert named["output"]["shape"] == [3, 3]
    missing = atelier(platform, tmp_path, "serve", "infer", "digits", "-i", "nothing.npy", ok=False)
    assert missing.stderr.startswith("error: --input nothing.npy: no file nothing.npy")
    np.save(tmp_path / "big-endian.npy", x.astype(">f4"))
    swapped = atelier(platform, tmp_path, "serve", "infer", "digits", "-i", "big-endian.npy", "--json")
    np.testing.assert_allclose(np.array(swapped["output"]["data"], dtype=np.float32), expected, rtol=1e-6)
    np.save(tmp_path / "text.npy", np.array([["a"] * 4] * 3))
    text = atelier(platform, tmp_path, "serve", "infer", "digits", "-i", "text.npy", ok=False)
    assert text.stderr.startswith("error: input 'input' has dtype <U1; allowed numpy dtypes: bool, uint8")
    np.savez(tmp_path / "both.npz", x=x)
    archive = atelier(platform, tmp_path, "serve", "infer", "digits", "-i", "both.npz", ok=False)
    assert archive.stderr.startswith("error: --input both.npz: both.npz is an .npz archive")
    (tmp_path / "empty.npy").write_bytes(b"")
    empty = atelier(platform, tmp_path, "serve", "infer", "digits", "-i", "empty.npy", ok=False)
    assert empty.stderr.startswith("error: --input empty.npy: empty.npy is not a .npy array")
    for refused in (text, archive, empty):
        assert "Traceback" not in refused.stderr
    atelier(platform, tmp_path, "serve", "undeploy", "digits")
    gone = atelier(platform, tmp_path, "serve", "show", "digits", ok=False)
    assert gone.stderr.startswith("error: deployment projects/lab/deployments/digits not found")


def test_deploy_refusals_are_one_line(platform: Platform, tmp_path: Path) -> None:
    platform.register(Affine(), torch.randn(2, 4), "affine")
    bad = atelier(platform, tmp_path, "serve", "deploy", "affine@latest", "--device", "tpu", ok=False)
    assert bad.stderr.startswith("error: device is 'tpu'; use cpu, cuda or cuda:N")
    unknown = atelier(platform, tmp_path, "serve", "deploy", "affine@production", ok=False)
    assert unknown.stderr.startswith("error: no version lab/affine@production")
