"""Where the local stack keeps its state. Kept apart from the settings module so that the CLI's start
needs no pydantic-settings import."""

from __future__ import annotations

import os
from pathlib import Path


def atelier_home() -> Path:
    """Where the local stack keeps its state: `$ATELIER_HOME`, by default `./.atelier`."""
    return Path(os.environ.get("ATELIER_HOME", ".atelier")).absolute()
