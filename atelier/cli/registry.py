"""`atelier experiments|runs|models ...`: tracked runs and the model registry."""

from __future__ import annotations

import os
from typing import Annotated, Any

import typer
from google.protobuf import json_format
from rich.table import Table
from rich.text import Text
from rich.tree import Tree

from atelier.cli.limits import INT32_MAX
from atelier.cli.output import console, emit, to_json
from atelier.cli.usage import describe, describe_recorded, job_usage, recorded
from atelier.client import RegistryClient
from atelier.errors import InvalidArgument
from atelier.names import default_project, parse_model_ref
from atelier.registry.v1 import resources_pb2 as pb
from atelier.stack.addresses import service_address

experiments = typer.Typer(help="Experiments of a project.", no_args_is_help=True)
runs = typer.Typer(help="Tracked runs: list, show, compare.", no_args_is_help=True)
models = typer.Typer(help="The model registry: versions, search, promotion, lineage.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
ProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", help="Project (default: $ATELIER_PROJECT or 'default').")
]
FilterOption = Annotated[
    str, typer.Option("--filter", "-f", help='e.g. "metrics.val_accuracy > 0.9 and params.lr < 0.01"')
]
OrderOption = Annotated[str, typer.Option("--order-by", "-o", help='e.g. "metrics.val_accuracy desc"')]
LimitOption = Annotated[int, typer.Option("--limit", "-n", min=1, max=INT32_MAX, help="At most this many results.")]


def _client() -> RegistryClient:
    return RegistryClient.at(service_address("registry"))


def _project(project: str | None) -> str:
    return project or default_project()


def _state(run: pb.Run) -> str:
    return pb.RunState.Name(run.state).removeprefix("RUN_STATE_")


def _run_name(text: str, project: str) -> str:
    """A run by its full name or as `EXPERIMENT/RUN_ID`."""
    if text.startswith("projects/"):
        return text
    experiment, _, run_id = text.partition("/")
    return f"projects/{project}/experiments/{experiment}/runs/{run_id}"


def _when(stamp: Any) -> str:
    return str(stamp.ToDatetime().strftime("%Y-%m-%d %H:%M"))


def _short(name: str) -> str:
    parts = name.split("/")
    return f"{parts[3]}/{parts[5]}" if len(parts) == 6 else name


@experiments.command("ls")
def list_experiments(project: ProjectOption = None, as_json: Json = False) -> None:
    """List the experiments of a project."""
    found = list(_client().list_experiments(_project(project)))

    def render() -> None:
        table = Table("experiment", "created", "description", box=None)
        for e in found:
            table.add_row(e.name.rsplit("/", 1)[-1], _when(e.create_time), e.description)
        console.print(table)

    emit(as_json, found, render)


@runs.command("ls")
def list_runs(
    experiment: Annotated[str, typer.Argument(help="Experiment, or - for all.")] = "-",
    filter: FilterOption = "",
    order_by: OrderOption = "",
    limit: LimitOption = 50,
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """List runs, filtered and ordered like the registry's search."""
    parent = f"projects/{_project(project)}/experiments/{experiment}"
    found = []
    for run in _client().list_runs(parent, filter=filter, order_by=order_by, page_size=min(limit, 1000)):
        found.append(run)
        if len(found) >= limit:
            break

    def render() -> None:
        keys = sorted({k for r in found for k in r.metrics})[:6]
        table = Table("run", "state", "started", "user", *keys, box=None)
        for r in found:
            values = [f"{r.metrics[k]:.4g}" if k in r.metrics else "" for k in keys]
            table.add_row(_short(r.name), _state(r), _when(r.start_time), r.user, *values)
        console.print(table)

    emit(as_json, found, render)


@runs.command("show")
def show_run(
    run: Annotated[str, typer.Argument(help="EXPERIMENT/RUN_ID or a full run name.")],
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Show a run: state, params, last metrics, inputs, code, artifacts and (for a job) its GPU use."""
    found = _client().get_run(_run_name(run, _project(project)))
    # The registry's figures once the monitor recorded some; until then the monitor's own.
    used = recorded(found.usage) if found.HasField("usage") else job_usage(found.job)

    def render() -> None:
        console.print(Text.assemble((found.name, "bold"), f"  {_state(found)} {found.state_message}"))
        console.print(f"inputs: {', '.join(found.inputs) or '-'}")
        if found.job:
            shown = describe_recorded(found.usage) if found.HasField("usage") else describe(used) if used else None
            console.print(f"job: {found.job}; GPU use: {shown or 'not recorded'}")
        code = found.code
        if code.commit:
            console.print(
                f"code: {code.git_remote or 'local'} {code.commit[:12]} ({code.branch or 'detached'})"
                + (" dirty" if code.dirty else "")
            )
        table = Table("kind", "name", "value", box=None)
        for key, value in sorted(found.params.items()):
            table.add_row("param", key, value)
        for key, number in sorted(found.metrics.items()):
            table.add_row("metric", key, f"{number:.6g}")
        for artifact in found.artifacts:
            table.add_row("artifact", artifact.path, artifact.artifact)
        console.print(table)

    emit(as_json, {**to_json(found), "gpuUsage": to_json(used)} if used else found, render)


@runs.command("compare")
def compare_runs(
    names: Annotated[list[str], typer.Argument(help="Two or more runs (EXPERIMENT/RUN_ID or full names).")],
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Params and final metrics of several runs side by side."""
    if len(names) < 2:
        raise InvalidArgument(f"compare needs two or more runs; got {len(names)}")
    client = _client()
    found = [client.get_run(_run_name(n, _project(project))) for n in names]

    def render() -> None:
        table = Table("", *[_short(r.name) for r in found], box=None)
        for key in sorted({k for r in found for k in r.params}):
            cells = [r.params.get(key, "") for r in found]
            table.add_row(f"params.{key}", *cells, style="yellow" if len(set(cells)) > 1 else None)
        for key in sorted({k for r in found for k in r.metrics}):
            table.add_row(f"metrics.{key}", *[f"{r.metrics[key]:.6g}" if key in r.metrics else "" for r in found])
        console.print(table)

    emit(as_json, found, render)


@models.command("ls")
def list_models(project: ProjectOption = None, as_json: Json = False) -> None:
    """List registered models with their aliases."""
    found = list(_client().list_models(_project(project)))

    def render() -> None:
        table = Table("model", "versions", "aliases", box=None)
        for m in found:
            aliases = ", ".join(f"{a}->{v.rsplit('/', 1)[-1]}" for a, v in sorted(m.aliases.items()))
            table.add_row(m.name.rsplit("/", 1)[-1], str(m.version_count), aliases)
        console.print(table)

    emit(as_json, found, render)


def _version_table(versions: list[pb.ModelVersion]) -> Table:
    keys = sorted({k for v in versions for k in v.metrics})[:6]
    table = Table("version", "aliases", "created", "run", *keys, box=None)
    for v in versions:
        values = [f"{v.metrics[k]:.4g}" if k in v.metrics else "" for k in keys]
        model = v.name.split("/")[3]
        table.add_row(
            f"{model}@v{v.number}",
            ",".join(v.aliases),
            v.create_time.ToDatetime().strftime("%Y-%m-%d %H:%M"),
            _short(v.lineage.run),
            *values,
        )
    return table


@models.command("show")
def show_model(
    reference: Annotated[str, typer.Argument(help="MODEL[@REF]: vN, latest or an alias.")],
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Show a model version: artifact, signature, metrics, lineage and the GPU use that produced it."""
    ref = parse_model_ref(reference, _project(project))
    client = _client()
    version = client.get_version(ref.version_name)
    if version.HasField("usage") or not version.lineage.run:
        used = recorded(version.usage) if version.HasField("usage") else None
    else:  # not recorded yet: ask the monitor
        used = job_usage(client.get_run(version.lineage.run).job)

    def render() -> None:
        console.print(Text.assemble((version.name, "bold"), f"  aliases: {', '.join(version.aliases) or '-'}"))
        console.print(
            f"format: {pb.ModelFormat.Name(version.format).removeprefix('MODEL_FORMAT_')}  artifact: {version.artifact}"
        )
        for spec in [*version.signature.inputs, *version.signature.outputs]:
            dtype = pb.TensorDatatype.Name(spec.datatype).removeprefix("TENSOR_DATATYPE_")
            console.print(f"  {spec.name}: {dtype} {list(spec.shape)}")
        console.print(f"run: {version.lineage.run or '-'}; datasets: {', '.join(version.lineage.datasets) or '-'}")
        for key, value in sorted(version.metrics.items()):
            console.print(f"  metrics.{key} = {value:.6g}")
        if version.HasField("usage"):
            console.print(f"trained with: {describe_recorded(version.usage)}")
        elif used:
            console.print(f"trained with: {describe(used)} ({used.job})")

    emit(as_json, {**to_json(version), "gpuUsage": to_json(used)} if used else version, render)


@models.command("versions")
def list_versions(
    model: Annotated[str, typer.Argument(help="MODEL, as NAME or PROJECT/NAME.")],
    limit: LimitOption = 50,
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """List the versions of a model, newest first."""
    _search(parse_model_ref(model, _project(project)).model_name, "", "", limit, as_json)


@models.command("search")
def search_models(
    filter: FilterOption = "",
    order_by: OrderOption = "",
    model: Annotated[str, typer.Option("--model", "-m", help="Only this model (default: every model).")] = "-",
    limit: LimitOption = 20,
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Search model versions by metrics, params, tags, lineage and time, in one call."""
    _search(f"projects/{_project(project)}/models/{model}", filter, order_by, limit, as_json)


def _search(parent: str, filter: str, order_by: str, limit: int, as_json: bool) -> None:
    found: list[pb.ModelVersion] = []
    for version in _client().list_versions(parent, filter=filter, order_by=order_by, page_size=min(limit, 1000)):
        found.append(version)
        if len(found) >= limit:
            break
    emit(as_json, found, lambda: console.print(_version_table(found)))


@models.command("promote")
def promote(
    reference: Annotated[str, typer.Argument(help="MODEL[@REF] to promote (default: latest).")],
    alias: Annotated[str, typer.Argument(help="Alias to move, e.g. production.")],
    gate: Annotated[
        str, typer.Option("--gate", "-g", help='e.g. "metrics.val_accuracy >= current.metrics.val_accuracy"')
    ] = "",
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Point an alias at a version, if the gate holds."""
    ref = parse_model_ref(reference, _project(project))
    author = os.environ.get("ATELIER_USER") or os.environ.get("USER", "")
    moved = _client().set_alias(ref.model_name, alias, ref.ref, gate=gate, author=author)
    emit(
        as_json,
        moved,
        lambda: console.print(
            Text.assemble(
                (f"{ref.model}@{alias}", "green"),
                f" -> {moved.version.rsplit('/', 1)[-1]}" + (f" (gate: {gate})" if gate else ""),
            )
        ),
    )


@models.command("lineage")
def lineage(
    reference: Annotated[str, typer.Argument(help="MODEL[@REF].")],
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """The lineage of a version: run, code, datasets and the versions it was fine-tuned from."""
    ref = parse_model_ref(reference, _project(project))
    graph = _client().lineage(ref.version_name)

    def render() -> None:
        incoming: dict[str, list[tuple[str, str]]] = {}
        for edge in graph.edges:
            incoming.setdefault(edge.target, []).append((edge.relation, edge.source))
        root = graph.nodes[0].name if graph.nodes else ref.version_name
        tree = Tree(Text(root, style="bold"))

        def grow(branch: Tree, name: str, depth: int) -> None:
            for relation, source in incoming.get(name, []):
                child = branch.add(f"{relation.replace('_', ' ')}: {source}")
                if depth < 20:
                    grow(child, source, depth + 1)

        grow(tree, root, 0)
        console.print(tree)

    emit(as_json, graph, render)


@models.command("reproduce")
def reproduce(
    reference: Annotated[str, typer.Argument(help="MODEL[@REF].")],
    print_spec: Annotated[bool, typer.Option("--print", help="Print the reproduction spec.")] = True,
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """What to run to reproduce a version: datasets, code and diff, params, environment, command."""
    ref = parse_model_ref(reference, _project(project))
    spec = _client().reproduction_spec(ref.version_name)

    def render() -> None:
        console.print(Text(f"reproduce {spec.model_version}", style="bold"))
        for dataset in spec.datasets:
            console.print(f"  atelier data pull {dataset} ./data")
        code = spec.code
        if code.commit:
            console.print(f"  git clone {code.git_remote or '<repository>'} && git checkout {code.commit}")
            if code.diff_artifact:
                console.print(f"  apply the uncommitted diff stored in {code.diff_artifact}")
        console.print(f"  python {spec.environment.python_version}, torch {spec.environment.torch_version or '-'}")
        console.print(f"  params: {json_format.MessageToDict(spec).get('params', {})}")
        console.print(f"  command: {' '.join(spec.command) or '-'}")

    if print_spec:
        emit(as_json, spec, render)
