"""`python -m demo [--keep] [--work-dir DIR]`: run every chapter against a fresh stack, then stop it."""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from types import FrameType

from rich.console import Console
from rich.text import Text

from demo.chapter import Context
from demo.chapters import CHAPTERS
from demo.runner import OUTPUT_COLUMNS, DemoError, Runner
from demo.stack import running_stack


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    """The demo's options."""
    parser = argparse.ArgumentParser(prog="python -m demo", description=__doc__)
    parser.add_argument("--keep", action="store_true", help="Keep the working files and the stack's home.")
    parser.add_argument(
        "--work-dir", type=Path, help="Work here (an empty or missing directory) instead of a fresh temp dir."
    )
    return parser.parse_args(argv)


def make_work_dir(requested: Path | None) -> Path:
    """The demo's working directory: `requested` (which must be empty or missing) or a fresh temp dir."""
    if requested is None:
        return Path(tempfile.mkdtemp(prefix="atelier-demo-"))
    work = requested.absolute()
    if work.exists() and (not work.is_dir() or any(work.iterdir())):
        raise DemoError(f"--work-dir {requested} is not an empty directory")
    work.mkdir(parents=True, exist_ok=True)
    return work


def run_chapters(context: Context) -> None:
    """Every chapter, in order, inside one running stack."""
    with running_stack(context.runner):
        for number, chapter in enumerate(CHAPTERS, start=1):
            context.runner.chapter(number, chapter.title, chapter.summary)
            chapter.run(context)


def make_console() -> Console:
    """The demo's console; as wide as the CLI output it shows when not a terminal (a log, a test)."""
    console = Console(highlight=False)
    if not console.is_terminal:
        console.width = OUTPUT_COLUMNS + 8
    return console


class Terminated(BaseException):
    """The demo got SIGTERM (a BaseException, like KeyboardInterrupt, so nothing on the way swallows it)."""


def stop_on_sigterm() -> None:
    """Turn SIGTERM into `Terminated` so the stack is still stopped when the demo is terminated."""

    def handle(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    signal.signal(signal.SIGTERM, handle)


def clean_up(console: Console, work: Path, keep: bool) -> None:
    """Remove the working directory, or say where it was kept."""
    if keep:
        console.print(Text(f"kept the working files in {work} (home: {work / 'home'})", style="dim"))
    else:
        shutil.rmtree(work, ignore_errors=True)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the demo; 0 when every chapter succeeded, else non-zero with a one-line error on stderr."""
    args = parse_args(argv)
    console = make_console()
    stop_on_sigterm()
    started = time.monotonic()
    try:
        work = make_work_dir(args.work_dir)
    except DemoError as error:
        return fail(str(error))
    runner = Runner(work_dir=work, home=work / "home", console=console)
    try:
        run_chapters(Context(runner=runner, work_dir=work))
    except KeyboardInterrupt:
        return fail("interrupted", code=130)
    except Terminated:
        return fail("terminated (SIGTERM)", code=128 + signal.SIGTERM)
    except Exception as error:  # every failure ends as one line and exit code 1
        return fail(str(error) if isinstance(error, DemoError) else f"{type(error).__name__}: {error}")
    finally:
        clean_up(console, work, args.keep)
    console.print()
    console.print(Text(f"demo finished in {time.monotonic() - started:.0f}s: all chapters passed", style="bold green"))
    return 0


def fail(message: str, code: int = 1) -> int:
    """Print the one-line error the demo exits with; return `code`, its exit code."""
    Console(stderr=True, highlight=False, soft_wrap=True).print(Text(f"error: {message}", style="red"))
    return code


if __name__ == "__main__":
    sys.exit(main())
