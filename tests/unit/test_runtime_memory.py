"""Keeping freed buffers: the C library takes the settings where it is glibc."""

from __future__ import annotations

import platform
import subprocess
import sys


def test_glibc_takes_the_settings() -> None:
    script = "from atelier.runtime.memory import keep_freed_buffers; print(keep_freed_buffers())"
    # In a fresh process: the settings last for the process's life.
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    expected = sys.platform.startswith("linux") and platform.libc_ver()[0] == "glibc"
    assert printed.strip() == str(expected)
