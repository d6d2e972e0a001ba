"""What a chapter of the demo is, and the context every chapter shares.

A chapter is a title, a one-line summary and a function of the shared `Context`. What one chapter
leaves for the next (a dataset version, a model) goes into `Context.refs`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from demo.runner import Runner


@dataclass
class Context:
    """What every chapter gets: the runner, the demo's working directory, and what earlier chapters left."""

    runner: Runner
    work_dir: Path
    refs: dict[str, str] = field(default_factory=dict)
    """Named references earlier chapters published, e.g. `"dataset": "digits@v2"`."""


@dataclass(frozen=True)
class Chapter:
    """One part of the story."""

    title: str
    summary: str
    run: Callable[[Context], None]
