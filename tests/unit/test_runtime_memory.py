"""Keeping freed buffers (the C library takes the settings where it is glibc), and freezing start-up objects."""

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


def test_start_up_objects_leave_the_collector_and_later_garbage_does_not() -> None:
    script = (
        "import gc, weakref\n"
        "from atelier.runtime.memory import freeze_startup_objects\n"
        "class Node: pass\n"
        "kept = Node(); kept.me = kept\n"
        "freeze_startup_objects()\n"
        "frozen = gc.get_freeze_count()\n"
        "late = Node(); late.me = late; gone = weakref.ref(late); del late\n"
        "gc.collect()\n"
        "print(frozen > 1000, not any(o is kept for o in gc.get_objects()), gone() is None)\n"
    )
    printed = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=True).stdout
    assert printed.split() == ["True", "True", "True"]
