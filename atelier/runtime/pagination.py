"""AIP-158 pagination helpers shared by every List RPC."""

from __future__ import annotations

import base64
import json
from typing import Any

from atelier.errors import InvalidArgument

# The longest text a token's position may hold (a path or a name).
_MAX_TOKEN_TEXT = 8192


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


def decode_token(token: str, default: Any, kind: type | None = None) -> Any:
    """The position a token stands for (`default` for an empty token). The position must have the
    shape of `default` (`kind` when the default is None): a string, a 64-bit integer, or a list of
    those of the default's length. Anything else was not issued here, and is refused rather than
    reaching a query."""
    if not token:
        return default
    try:
        position = json.loads(base64.urlsafe_b64decode(token.encode()))
    except (ValueError, UnicodeDecodeError):
        raise _foreign() from None
    if not _shaped_like(position, default, kind):
        raise _foreign()
    return position


def _shaped_like(position: Any, default: Any, kind: type | None) -> bool:
    if isinstance(default, list):
        return (
            isinstance(position, list)
            and len(position) == len(default)
            and all(_shaped_like(p, d, None) for p, d in zip(position, default, strict=True))
        )
    expected = kind if default is None else type(default)
    if expected is int:
        return isinstance(position, int) and not isinstance(position, bool) and -(2**63) <= position < 2**63
    if expected is str:
        return isinstance(position, str) and len(position) <= _MAX_TOKEN_TEXT
    return False


def _foreign() -> InvalidArgument:
    return InvalidArgument(
        "page_token is not a token this service issued; pass back next_page_token unchanged",
        metadata={"field": "page_token"},
    )
