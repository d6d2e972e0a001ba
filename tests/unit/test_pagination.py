"""Page tokens: only positions shaped like the ones this service issues come back in."""

from __future__ import annotations

import base64
import json

import pytest

from atelier.errors import InvalidArgument
from atelier.runtime.pagination import decode_token, encode_token, page_size


def _token(value: object) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode()


def test_issued_tokens_round_trip() -> None:
    assert decode_token(encode_token("b/c"), "") == "b/c"
    assert decode_token(encode_token(41), 2**31 - 1) == 41
    assert decode_token(encode_token([3, 9]), [-(2**62), 0]) == [3, 9]
    assert decode_token(encode_token(7), None, int) == 7
    assert decode_token("", "start") == "start"


@pytest.mark.parametrize(
    ("value", "default", "kind"),
    [
        ([1, 2], "", None),
        (None, "", None),
        (2**70, 0, None),
        (True, 0, None),
        ("abc", 0, None),
        (1.5, 0, None),
        ([1], [0, 0], None),
        (["a", 1], [0, 0], None),
        ({"a": 1}, None, int),
        ("x" * 9000, "", None),
    ],
)
def test_foreign_positions_are_refused(value: object, default: object, kind: type | None) -> None:
    with pytest.raises(InvalidArgument, match="page_token is not a token this service issued"):
        decode_token(_token(value), default, kind)


def test_garbage_is_refused() -> None:
    with pytest.raises(InvalidArgument, match="page_token is not a token this service issued"):
        decode_token("not base64 json!", "")


def test_page_sizes() -> None:
    assert page_size(0) == 100
    assert page_size(10**9) == 1000
    with pytest.raises(InvalidArgument, match="page_size must be >= 0"):
        page_size(-1)
