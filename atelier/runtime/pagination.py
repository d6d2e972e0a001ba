"""AIP-158 pagination helpers shared by every List RPC."""

from __future__ import annotations

import base64
import json
from typing import Any

from atelier.errors import InvalidArgument


def page_size(requested: int, default: int = 100, maximum: int = 1000) -> int:
    """0 means the default, larger values are capped, negative ones are an error."""
    if requested < 0:
        raise InvalidArgument(
            f"page_size must be >= 0, got {requested}", metadata={"field": "page_size", "value": str(requested)}
        )
    return min(requested or default, maximum)


def encode_token(position: Any) -> str:
    """An opaque token for the position after the last result returned."""
    return base64.urlsafe_b64encode(json.dumps(position).encode()).decode()


def decode_token(token: str, default: Any) -> Any:
    """The position a token stands for (`default` for an empty token)."""
    if not token:
        return default
    try:
        return json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeDecodeError) as error:
        raise InvalidArgument(
            "page_token is not a token this service issued; pass back next_page_token unchanged",
            metadata={"field": "page_token"},
        ) from error
