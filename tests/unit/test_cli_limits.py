"""Numbers too large for their request field, or for a date, are refused naming the option."""

from __future__ import annotations

import math
import os
import subprocess
import sys

import pytest

from atelier.cli.data import _duration
from atelier.cli.iam import parse_expiry
from atelier.cli.jobs import parse_size
from atelier.cli.limits import INT64_MAX, MAX_SECONDS, byte_count, seconds
from atelier.cli.usage import parse_moment
from atelier.errors import InvalidArgument


@pytest.mark.parametrize("value", [math.inf, -math.inf, math.nan, -1.0, MAX_SECONDS + 1.0])
def test_seconds_out_of_range(value: float) -> None:
    with pytest.raises(InvalidArgument, match="^--max-run-time "):
        seconds(value, "--max-run-time")


def test_seconds_in_range() -> None:
    assert seconds(0, "--x") == 0
    assert seconds(MAX_SECONDS, "--x") == MAX_SECONDS


def test_byte_counts() -> None:
    assert byte_count(2**40, "--m") == 2**40
    for value in (math.inf, math.nan, float(INT64_MAX) * 2, -1.0):
        with pytest.raises(InvalidArgument, match="--m: .* bytes is out of range"):
            byte_count(value, "--m")


def test_sizes_durations_and_moments_name_the_option_as_written() -> None:
    with pytest.raises(InvalidArgument, match="--min-gpu-memory: .* out of range"):
        parse_size("99999999999TiB", "--min-gpu-memory")
    with pytest.raises(InvalidArgument, match="--min-gpu-memory: .* out of range"):
        parse_size("9" * 400, "--min-gpu-memory")
    with pytest.raises(InvalidArgument, match="^--grace 99999999999999999999999d: too long"):
        _duration("99999999999999999999999d")
    with pytest.raises(InvalidArgument, match="^--expires 99999999999d: too long"):
        parse_expiry("99999999999d")
    with pytest.raises(InvalidArgument, match="^--since 3000000d: too long"):
        parse_moment("3000000d", "--since")
    with pytest.raises(InvalidArgument, match="^--since '9999-12-31T23:59:59-23:59' is not a date"):
        parse_moment("9999-12-31T23:59:59-23:59", "--since")
    assert parse_size("40GiB") == 40 * 2**30
    assert _duration("1h") == 3600


def test_an_integer_option_past_its_field_is_a_usage_error() -> None:
    ended = subprocess.run(
        [sys.executable, "-m", "atelier.cli.main", "jobs", "submit", "--nodes", "99999999999999999999", "--", "echo"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
    )

    assert ended.returncode == 2
    assert "Traceback" not in ended.stderr
    assert "'--nodes' / '-N': 99999999999999999999 is not in the range 1<=x<=2147483647" in ended.stderr
