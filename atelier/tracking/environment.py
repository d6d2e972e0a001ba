"""What a run records about where it ran: the code (git) and the software and hardware."""

from __future__ import annotations

import platform
import socket
import subprocess
import sys
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from typing import Any

from atelier.registry.v1 import resources_pb2 as pb


@dataclass(frozen=True)
class GitState:
    """The repository the script runs from, with its uncommitted changes."""

    code: pb.CodeVersion
    diff: bytes


def _git(cwd: Path, *args: str) -> str | None:
    try:
        result = subprocess.run(["git", *args], cwd=cwd, capture_output=True, timeout=10, check=False)
    except (OSError, subprocess.TimeoutExpired):
        return None
    return result.stdout.decode(errors="replace").strip() if result.returncode == 0 else None


def git_state(cwd: Path | None = None) -> GitState | None:
    """Remote, commit, branch and `git diff HEAD` (with untracked files listed) of the work tree."""
    where = cwd or Path.cwd()
    commit = _git(where, "rev-parse", "HEAD")
    if commit is None:
        return None
    status = _git(where, "status", "--porcelain") or ""
    diff = _git(where, "diff", "HEAD", "--binary") or ""
    untracked = [line[3:] for line in status.splitlines() if line.startswith("?? ")]
    if untracked:
        diff += "\n# untracked files:\n" + "\n".join(f"#   {path}" for path in untracked) + "\n"
    code = pb.CodeVersion(
        git_remote=_git(where, "remote", "get-url", "origin") or "",
        commit=commit,
        branch=_git(where, "rev-parse", "--abbrev-ref", "HEAD") or "",
        dirty=bool(status),
    )
    if code.branch == "HEAD":
        code.branch = ""
    return GitState(code, diff.encode())


def environment() -> pb.Environment:
    """Python, installed distributions, torch and CUDA versions, GPU models, host and platform."""
    packages = {}
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            packages[name] = dist.version
    env = pb.Environment(
        python_version=platform.python_version(),
        packages=packages,
        hostname=socket.gethostname(),
        platform=f"{platform.system()}-{platform.machine()}",
    )
    # Only a torch the script already imported: importing it here would cost seconds for nothing.
    torch: Any = sys.modules.get("torch")
    if torch is None:
        return env
    env.torch_version = str(torch.__version__)
    env.cuda_version = str(torch.version.cuda or "")
    if torch.cuda.is_available():
        env.gpu_models.extend(sorted({torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())}))
    return env
