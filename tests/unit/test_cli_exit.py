"""The CLI ends its process without tearing the interpreter down, yet as a normal exit would end it."""

from __future__ import annotations

import subprocess
import sys
import textwrap


def _run(body: str) -> subprocess.CompletedProcess[str]:
    script = "import atexit, sys, threading, time\nfrom atelier.cli.main import exit_now\n" + textwrap.dedent(body)
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=60)


def test_exit_handlers_run_output_is_flushed_and_the_status_kept() -> None:
    ended = _run(
        """
        atexit.register(lambda: print("handler ran", file=sys.stderr))
        sys.stdout.write("buffered, no newline")
        exit_now(SystemExit(3))
        print("not reached")
        """
    )
    assert ended.returncode == 3
    assert ended.stdout == "buffered, no newline"
    assert ended.stderr == "handler ran\n"


def test_a_message_as_the_exit_code_is_printed_and_fails() -> None:
    ended = _run("exit_now(SystemExit('went wrong'))")
    assert (ended.returncode, ended.stderr) == (1, "went wrong\n")


def test_no_code_is_success() -> None:
    assert _run("exit_now(SystemExit(None))").returncode == 0


def test_a_thread_still_working_is_waited_for() -> None:
    ended = _run(
        """
        threading.Thread(target=lambda: (time.sleep(0.5), print("thread finished"))).start()
        exit_now(SystemExit(0))
        print("exit_now returned")
        """
    )
    assert ended.returncode == 0
    assert ended.stdout == "exit_now returned\nthread finished\n"
