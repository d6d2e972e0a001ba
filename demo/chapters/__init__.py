"""The demo's chapters, in the order they run.

Later chapters (monitor) each get a module here and an entry in `CHAPTERS`.
"""

from __future__ import annotations

from demo.chapter import Chapter
from demo.chapters import access, data, inference, registry, scheduler

CHAPTERS: tuple[Chapter, ...] = (access.CHAPTER, data.CHAPTER, registry.CHAPTER, scheduler.CHAPTER, inference.CHAPTER)
