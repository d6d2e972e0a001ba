"""Atelier's data service side by side with DVC 3, on the same machine and the same files.

Both tools are driven through their command lines, one fresh process per operation, as a user
would run them (`python -m atelier.cli.main data ... --json` against a data service started here
on a fresh ATELIER_HOME with SQLite and the local object store; `dvc ...` from its own venv, which
this package creates under benchmarks/.work/dvc-venv). Measured:

1. Commit: N small random files (default 100,000 x 4 KiB in 100 subdirectories) become a dataset
   version: `atelier data push DIR` into a fresh stack vs `dvc add DIR` (hash + copy into the DVC
   cache). Atelier's push already stores the chunks in the object store.
2. Push and pull of those files: Atelier's push is (1); DVC's is `dvc add` + `dvc push` to a local
   remote. A second push of the unchanged directory (a no-op) for both. Then a pull into an empty
   directory: `atelier data pull` vs `dvc pull` with the workspace copy and the DVC cache removed.
3. A big random file (default 1 GiB): push, overwrite 1 MiB in the middle, push again. Bytes the
   second push sent: Atelier's `sentBytes` vs the growth of DVC's remote directory.

Every step's wall time is printed. The page cache is dropped (`sync; echo 3 >
/proc/sys/vm/drop_caches`) before each timed step when this process may do so, else the runs are
warm-cache and the report says so. Results are a markdown table on stdout; `--write-docs` also
replaces the "## Data service vs DVC" section of docs/performance.md.

    .venv/bin/python -m benchmarks.data_vs_dvc [--quick] [--warm-cache] [--write-docs]
"""
