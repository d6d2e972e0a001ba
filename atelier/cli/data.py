"""`atelier data ...`: push, pull, list, log, diff and tag dataset versions; usage and GC."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated

import typer
from rich.table import Table
from rich.text import Text

from atelier.cli.limits import seconds
from atelier.cli.output import console, emit, human_bytes, progress_bar
from atelier.client.data import DataClient
from atelier.data.v1 import resources_pb2 as pb
from atelier.datasets.push import push as push_directory
from atelier.errors import InvalidArgument
from atelier.names import DatasetRef, default_project, parse_dataset_ref
from atelier.runtime.memory import keep_freed_buffers
from atelier.stack.addresses import service_address

app = typer.Typer(help="Version datasets: push, pull, inspect and tag.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", help="Project (default: $ATELIER_PROJECT or 'default').")
]
_KINDS = {pb.CHANGE_KIND_ADDED: "added", pb.CHANGE_KIND_REMOVED: "removed", pb.CHANGE_KIND_MODIFIED: "modified"}


def _client() -> DataClient:
    return DataClient.at(service_address("data"))


def _ref(text: str, project: str | None) -> DatasetRef:
    return parse_dataset_ref(text, project or default_project())


def _short(name: str) -> str:
    """`projects/p/datasets/d/versions/v3` -> `p/d@v3`."""
    parts = name.split("/")
    return f"{parts[1]}/{parts[3]}@{parts[5]}" if len(parts) == 6 else name


@app.command()
def push(
    directory: Annotated[Path, typer.Argument(help="Directory whose files become the new version.")],
    dataset: Annotated[str, typer.Argument(help="Dataset, as NAME or PROJECT/NAME.")],
    message: Annotated[str, typer.Option("--message", "-m", help="Commit message.")] = "",
    project: ProjectOption = None,
    rebase: Annotated[bool, typer.Option("--rebase", help="Apply the changes on top of a newer version.")] = False,
    as_json: Json = False,
) -> None:
    """Push a directory as a new version (only chunks the store lacks are sent)."""
    target = _ref(dataset, project)
    if "@" in dataset:
        raise InvalidArgument(f"push takes a dataset, not a version reference: {dataset!r}")
    keep_freed_buffers()  # the batches sent are messages of several MiB each
    with progress_bar(not as_json) as progress:
        result = push_directory(_client(), directory, target, message=message, rebase=rebase, progress=progress)

    def render() -> None:
        if result.created:
            console.print(
                Text.assemble(
                    (_short(result.version.name), "green"),
                    f" {result.files} files, {human_bytes(result.total_bytes)}; sent {result.sent_chunks} chunks "
                    f"({human_bytes(result.sent_bytes)}); digest {result.version.digest[:12]}",
                )
            )
        else:
            console.print(f"unchanged: {_short(result.version.name)} already holds this content")

    emit(
        as_json,
        {
            "version": result.version,
            "created": result.created,
            "files": result.files,
            "sentChunks": result.sent_chunks,
            "sentBytes": result.sent_bytes,
        },
        render,
    )


@app.command()
def pull(
    source: Annotated[str, typer.Argument(help="DATASET[@REF]: vN, latest, a tag or a digest prefix.")],
    directory: Annotated[Path, typer.Argument(help="Where to write the files.")],
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Fetch a version into a directory (parallel, resumable, verified)."""
    from atelier.datasets.pull import pull as pull_version  # only this command needs it

    keep_freed_buffers()  # the chunks arrive in messages of several MiB each
    with progress_bar(not as_json) as progress:
        result = pull_version(_client(), _ref(source, project), directory, progress=progress)

    def render() -> None:
        console.print(
            Text.assemble(
                (_short(result.version.name), "green"),
                f" -> {directory}: {result.files} files, "
                f"fetched {result.fetched_files} ({human_bytes(result.fetched_bytes)}), all verified",
            )
        )

    emit(
        as_json,
        {
            "version": result.version,
            "files": result.files,
            "fetchedFiles": result.fetched_files,
            "fetchedBytes": result.fetched_bytes,
        },
        render,
    )


@app.command("ls")
def list_files(
    source: Annotated[str, typer.Argument(help="DATASET[@REF].")],
    prefix: Annotated[str, typer.Argument(help="Only paths starting with this.")] = "",
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """List the files of a version."""
    files = list(_client().list_files(_ref(source, project).version_name, prefix=prefix))

    def render() -> None:
        table = Table("path", "size", "digest", box=None)
        for f in files:
            table.add_row(f.path, human_bytes(f.size_bytes), f.digest[:12])
        console.print(table)

    emit(as_json, files, render)


@app.command()
def log(
    dataset: Annotated[str, typer.Argument(help="Dataset, as NAME or PROJECT/NAME.")],
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Show the versions of a dataset, newest first."""
    versions = list(_client().list_versions(_ref(dataset, project).dataset_name))

    def render() -> None:
        table = Table("version", "digest", "files", "size", "author", "created", "tags", "message", box=None)
        for v in versions:
            table.add_row(
                f"v{v.number}",
                v.digest[:12],
                str(v.file_count),
                human_bytes(v.total_size_bytes),
                v.author,
                v.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M:%S"),
                ",".join(v.tags),
                v.message,
            )
        console.print(table)

    emit(as_json, versions, render)


@app.command()
def diff(
    old: Annotated[str, typer.Argument(help="DATASET@A, the older version.")],
    new: Annotated[str, typer.Argument(help="DATASET@B, the newer version.")],
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Show files added, removed and modified from A to B."""
    result = _client().diff(_ref(new, project).version_name, _ref(old, project).version_name)

    def render() -> None:
        console.print(f"{_short(result.other_version)} -> {_short(result.version)}: {len(result.changes)} changes")
        styles = {"added": "green", "removed": "red", "modified": "yellow"}
        for change in result.changes:
            kind = _KINDS[change.kind]
            sizes = f"{human_bytes(change.old_size_bytes)} -> {human_bytes(change.new_size_bytes)}"
            console.print(Text.assemble((f"{kind:<9}", styles[kind]), f" {change.path}  ({sizes})"))

    emit(as_json, result, render)


@app.command()
def tag(
    source: Annotated[str, typer.Argument(help="DATASET@REF to tag.")],
    name: Annotated[str, typer.Argument(help="Tag name; an existing tag is moved.")],
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Point a tag at a version (creating or moving it; every move is recorded)."""
    ref = _ref(source, project)
    author = os.environ.get("ATELIER_USER") or os.environ.get("USER") or "unknown"
    result = _client().tag(ref.dataset_name, name, ref.ref, author=author)
    emit(as_json, result, lambda: console.print(f"tag {name} -> {_short(result.version)}"))


@app.command()
def usage(project: ProjectOption = None, as_json: Json = False) -> None:
    """Storage used by a project and each of its datasets (logical vs deduplicated)."""
    result = _client().usage(project or default_project())

    def render() -> None:
        table = Table("resource", "versions", "logical", "stored (dedup)", "quota", box=None)
        for u in [result.project, *result.datasets]:
            quota = human_bytes(u.quota_bytes) if u.quota_bytes else "-"
            table.add_row(
                u.resource,
                str(u.version_count),
                human_bytes(u.logical_bytes),
                human_bytes(u.deduplicated_bytes),
                quota if u is result.project else "",
            )
        console.print(table)

    emit(as_json, result, render)


def _duration(text: str) -> float:
    match = re.fullmatch(r"(\d+(?:\.\d+)?)([smhd]?)", text.strip())
    if not match:
        raise InvalidArgument(f"invalid duration {text!r}: use a number with s, m, h or d, e.g. 30m")
    return seconds(
        float(match.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[match.group(2)], "--grace", text
    )


@app.command()
def gc(
    grace: Annotated[str | None, typer.Option("--grace", help="Keep chunks touched within this (e.g. 1h).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Only report what would be freed.")] = False,
    as_json: Json = False,
) -> None:
    """Delete chunks no version references (after a grace period) and report what was freed."""
    result = _client().garbage_collect(_duration(grace) if grace else None, dry_run=dry_run)
    verb = "would free" if dry_run else "freed"
    emit(
        as_json,
        result,
        lambda: console.print(
            f"{verb} {human_bytes(result.freed_bytes)}: {result.deleted_chunks} chunks, "
            f"{result.rewritten_packs} packs removed or rewritten"
        ),
    )
