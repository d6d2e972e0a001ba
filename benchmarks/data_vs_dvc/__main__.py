"""The command line: `python -m benchmarks.data_vs_dvc`, the whole run in order."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence

from benchmarks.paths import DOCS

from .config import SCRATCH, SECTION, Config, parse_args
from .measure import measure_big_file, measure_small_files, startup_overhead
from .report import INTRO, report, write_docs
from .timing import Run, drop_caches
from .tools import Dvc, atelier_stack, ensure_dvc


def run_all(run: Run, config: Config, dvc: Dvc) -> None:
    """Every measurement, against one data service on a fresh ATELIER_HOME."""
    with atelier_stack(SCRATCH / "atelier-home") as atelier:
        startup_overhead(run, atelier, dvc)
        measure_small_files(run, config, atelier, dvc)
        measure_big_file(run, config, atelier, dvc)


def main(argv: Sequence[str] | None = None) -> None:
    config = parse_args(argv)
    dvc_version = ensure_dvc()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    run = Run(cold_cache=not config.warm_cache and drop_caches())
    dvc = Dvc(SCRATCH / "repo", SCRATCH / "dvc-remote")
    dvc.setup()
    try:
        run_all(run, config, dvc)
    finally:
        if not config.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    title, body = report(run, config, dvc_version)
    print(f"{SECTION}\n\n{INTRO}\n\n### {title}\n\n{body}")
    if config.write_docs:
        write_docs(title, body)
        print(f"wrote '{SECTION} / {title}' in {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
