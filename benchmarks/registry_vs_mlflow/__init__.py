"""Atelier's registry service side by side with MLflow 3, on the same machine, over the network.

Atelier runs as real processes (`python -m services.data`, `python -m services.registry`, SQLite
under a fresh ATELIER_HOME; optionally a second registry on a scratch PostgreSQL database), driven
over gRPC by `atelier.client`. MLflow runs from its own venv (created here under
benchmarks/.work/mlflow-venv) as `mlflow server` on a SQLite file, driven over HTTP by
`MlflowClient`, plus MlflowClient writing to SQLite directly for reference. Every load generator
is a fresh worker process (this package run with `--worker`), so neither tool's client shares an
interpreter with anything else. Measured:

1. Registering model versions with 8 client threads against one server: versions/s. By default the
   threads share one client process; `--clients N` spreads them over N processes (as N users' jobs
   registering at once would be), started together, for both tools.
   Atelier: one CreateModelVersion per version, carrying its metrics (val_accuracy, loss) and
   params (lr, batch, as lineage params); also the like-for-like path CreateRun (params) +
   LogRunData (metrics) + CreateModelVersion (lineage.run; metrics and params come from the run).
   MLflow: what a user does to give a version metrics: create_run, log_batch (metrics + params),
   create_model_version(source, run_id), through the tracking server and directly on SQLite.
   Also Atelier's BatchCreateModelVersions, 100 versions a call from the same 8 threads (MLflow has
   no batch registration API, so its row compares with MLflow's one-by-one path).
2. With many versions registered in one model, "the best version by val_accuracy among those with
   lr < 0.01": Atelier ListModelVersions(order_by="metrics.val_accuracy desc",
   filter="params.lr < 0.01", page_size=1) over gRPC; MLflow's two steps (search_runs ordered by
   metrics.val_accuracy with a params filter, then search_model_versions by run_id) through the
   server. Median and p99 latency, the answer checked against the generated data, and for Atelier
   a breakdown (gRPC end to end / the registry's query code in-process / the raw SQL) with the
   SQLite query plan.
3. Logging 1,000,000 metric points from one run: a training loop doing a fixed amount of CPU work
   per step (calibrated to ~1 ms) and logging N metrics per step; the time spent inside the logging
   calls as a % of the loop's wall time, the flush at the end, the loop's slowdown against the same
   loop without logging, and whether every point arrived. Atelier: `run.log_metrics` of
   `atelier.start_run`; MLflow: `mlflow.log_metrics`, synchronous and with `synchronous=False`.

Results are a markdown table on stdout; `--write-docs` also replaces the "## Registry vs MLflow"
section of docs/performance.md. Nothing here asserts on a timing.
"""
