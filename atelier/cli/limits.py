"""Bounds of the numbers the command line puts into requests, so that a value too large for its
protobuf field, or for a date, is refused naming the option and its range rather than failing
deep inside."""

from __future__ import annotations

import math

from atelier.errors import InvalidArgument

INT32_MAX = 2**31 - 1
INT64_MAX = 2**63 - 1
# The longest duration an option takes (a run time, a grace period, a token's life, a look back).
MAX_SECONDS = 100 * 365 * 86_400
_SPAN = "100 years"


def seconds(value: float, option: str, given: str = "") -> float:
    """`value`, a number of seconds (`given` as the user wrote it), if finite and from 0 to
    MAX_SECONDS."""
    if not (math.isfinite(value) and 0 <= value <= MAX_SECONDS):
        raise InvalidArgument(
            f"{option} {given or format(value, 'g')}: too long; at most {_SPAN} ({MAX_SECONDS} seconds)"
            if value > 0
            else f"{option} {given or format(value, 'g')}: give a number of seconds from 0 to {MAX_SECONDS}",
            metadata={"field": option},
        )
    return value


def byte_count(value: float, option: str) -> int:
    """`value`, a number of bytes, as an int if finite and from 0 to INT64_MAX."""
    if not (math.isfinite(value) and 0 <= value <= INT64_MAX):
        raise InvalidArgument(f"{option}: {value:g} bytes is out of range (at most 8 EiB)", metadata={"field": option})
    return int(value)
