"""Constants and helpers shared by the object store tests."""

from __future__ import annotations

import uuid

ACCESS_KEY = "testing"
SECRET_KEY = "testing-secret"
DATA = bytes(range(256)) * 4 + b"tail"


def _unique_bucket() -> str:
    return f"test-{uuid.uuid4().hex[:16]}"
