"""Printing results: rich tables for people, `--json` for scripts, progress bars for long work."""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from google.protobuf import json_format
from google.protobuf.message import Message
from rich.console import Console
from rich.progress import (
    BarColumn,
    DownloadColumn,
    Progress,
    ProgressColumn,
    Task,
    TaskID,
    TextColumn,
    TimeRemainingColumn,
    TransferSpeedColumn,
)
from rich.text import Text

# Markup off: what is printed holds user text (paths, messages, parameters) that may look like rich
# markup (`[/x]`); styles are given as `Text` instead.
console = Console(highlight=False, markup=False)


def to_json(value: Any) -> Any:
    """Protobuf messages in their canonical JSON mapping; lists and dicts recursively."""
    if isinstance(value, Message):
        return json_format.MessageToDict(value)
    if isinstance(value, list | tuple):
        return [to_json(v) for v in value]
    if isinstance(value, dict):
        return {k: to_json(v) for k, v in value.items()}
    return value


def emit(as_json: bool, value: Any, render: Callable[[], None]) -> None:
    """Print `value` as JSON when asked, else let `render` draw it."""
    if as_json:
        sys.stdout.write(json.dumps(to_json(value), indent=2) + "\n")
    else:
        render()


def human_bytes(count: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB", "TiB"):
        if abs(count) < 1024 or unit == "TiB":
            return f"{count:.0f} {unit}" if unit == "B" else f"{count:.1f} {unit}"
        count /= 1024
    return f"{count:.1f} TiB"


class AmountColumn(ProgressColumn):
    """Bytes done of total (with speed) for byte phases, `n/m files` for file phases."""

    def __init__(self) -> None:
        super().__init__()
        self._bytes = DownloadColumn(binary_units=True)
        self._speed = TransferSpeedColumn()

    def render(self, task: Task) -> Text:
        if task.fields.get("unit") == "files":
            total = f"{task.total:.0f}" if task.total is not None else "?"
            return Text(f"{task.completed:.0f}/{total} files", style="progress.download")
        return Text.assemble(self._bytes.render(task), " ", self._speed.render(task))


class RichProgress:
    """The `atelier.datasets.progress.Progress` hooks drawn as a rich progress bar (on stderr)."""

    def __init__(self, bar: Progress | None) -> None:
        self._bar = bar
        self._task: TaskID | None = None

    def phase(self, description: str, total: int | None, unit: str = "bytes") -> None:
        if self._bar is None:
            return
        if self._task is not None:
            self._bar.remove_task(self._task)
        self._task = self._bar.add_task(description, total=total, unit=unit)

    def advance(self, amount: int) -> None:
        if self._bar is not None and self._task is not None:
            self._bar.advance(self._task, amount)


@contextmanager
def progress_bar(enabled: bool) -> Iterator[RichProgress]:
    """A byte progress bar on stderr, or nothing when disabled (e.g. with --json)."""
    if not enabled or not sys.stderr.isatty():
        yield RichProgress(None)
        return
    bar = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        AmountColumn(),
        TimeRemainingColumn(),
        console=Console(stderr=True),
        transient=True,
    )
    with bar:
        yield RichProgress(bar)
