"""The command line: `python -m benchmarks.registry_vs_mlflow`, a worker or the whole run in order."""

from __future__ import annotations

import shutil
import sys
from collections.abc import Sequence

from benchmarks.paths import DOCS

from .config import SCRATCH, SECTION, Config, parse_args
from .measurements import measure_atelier, measure_mlflow_direct, measure_mlflow_server, measure_postgres
from .report import Report
from .section import INTRO, report_body, write_docs
from .servers import atelier_stack, ensure_mlflow
from .workers import worker_main
from .workload import calibrate


def run_all(config: Config, report: Report) -> None:
    work = calibrate(config.step_ms)
    report.figures["work"] = work
    print(f"  busy() iterations per ~{config.step_ms:g} ms step: {work}", file=sys.stderr)
    with atelier_stack(SCRATCH / "atelier-home") as stack:
        measure_atelier(report, config, stack, work)
        measure_postgres(report, config, stack)
    measure_mlflow_server(report, config, work)
    measure_mlflow_direct(report, config)


def main(argv: Sequence[str] | None = None) -> None:
    args = list(sys.argv[1:] if argv is None else argv)
    if args[:1] == ["--worker"]:
        worker_main(args[1], args[2])
        return
    config = parse_args(args)
    mlflow_version = ensure_mlflow()
    shutil.rmtree(SCRATCH, ignore_errors=True)
    SCRATCH.mkdir(parents=True)
    report = Report(wait=config.wait)
    try:
        run_all(config, report)
    finally:
        if not config.keep:
            shutil.rmtree(SCRATCH, ignore_errors=True)
    body = report_body(report, config, mlflow_version)
    print(f"{SECTION}\n\n{INTRO}\n\n{body}")
    if config.write_docs:
        write_docs(body)
        print(f"wrote '{SECTION}' in {DOCS}", file=sys.stderr)


if __name__ == "__main__":
    main()
