"""Where every benchmark finds the repository, its virtualenv, its scratch space and the performance page."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
WORK = REPO / "benchmarks" / ".work"
"""Scratch space and the peers' virtualenvs (ignored by git)."""
PYTHON = REPO / ".venv" / "bin" / "python"
DOCS = REPO / "docs" / "performance.md"
