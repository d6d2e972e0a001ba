"""The shipped Prometheus alert rules: valid, and every alert unit-tested with `promtool test rules`."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[3]
RULES = sorted((ROOT / "deploy" / "prometheus" / "rules").glob("*.yml"))
TESTS = sorted((ROOT / "deploy" / "prometheus" / "tests").glob("*.test.yml"))

pytestmark = pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool is not installed (make prometheus)")


def promtool(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["promtool", *args], capture_output=True, text=True, timeout=120, check=False)


def test_the_rules_are_valid() -> None:
    assert RULES
    result = promtool("check", "rules", *map(str, RULES))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_passes_its_unit_tests() -> None:
    result = promtool("test", "rules", *map(str, TESTS))
    assert result.returncode == 0, result.stdout + result.stderr


def test_every_alert_has_a_test_that_expects_it_to_fire() -> None:
    alerts = {name for path in RULES for name in re.findall(r"^\s*- alert: (\w+)", path.read_text(), re.MULTILINE)}
    tested = set()
    for path in TESTS:
        text = path.read_text()
        for name, body in re.findall(
            r"alertname: (\w+)\n\s*exp_alerts:(.*?)(?=\n\s*- eval_time|\n\s*- interval|\Z)", text, re.S
        ):
            if "exp_labels" in body:
                tested.add(name)
    assert alerts - tested == set()
