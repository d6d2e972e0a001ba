"""`atelier serve ...`: deploy registered model versions and call them (KServe v2)."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.table import Table
from rich.text import Text

from atelier.cli.limits import INT32_MAX, INT64_MAX
from atelier.cli.output import console, emit
from atelier.client.inference import InferenceClient
from atelier.client.monitor import MonitorClient
from atelier.errors import InvalidArgument
from atelier.inference.v1 import resources_pb2 as pb
from atelier.monitor.v1 import monitor_service_pb2 as monitor_pb
from atelier.names import default_project, parse_model_ref
from atelier.stack.addresses import service_address

if TYPE_CHECKING:
    import numpy as np

serve = typer.Typer(help="Serving: deploy model versions, list, show, undeploy, infer, drift.", no_args_is_help=True)

Json = Annotated[bool, typer.Option("--json", help="Print the result as JSON.")]
DeploymentArgument = Annotated[str, typer.Argument(help="Deployment id or name.")]
ProjectOption = Annotated[
    str | None, typer.Option("--project", "-p", help="Project (default: $ATELIER_PROJECT or 'default').")
]


def _client() -> InferenceClient:
    return InferenceClient.at(service_address("inference"))


def _project(project: str | None) -> str:
    return project or default_project()


def _name(text: str, project: str) -> str:
    return text if text.startswith("projects/") else f"projects/{project}/deployments/{text}"


def _state(deployment: pb.Deployment) -> str:
    return pb.DeploymentState.Name(deployment.state).removeprefix("DEPLOYMENT_STATE_")


def _version(deployment: pb.Deployment) -> str:
    return deployment.model_version.rpartition("/")[2]


@serve.command("deploy", no_args_is_help=True)
def deploy(
    model: Annotated[str, typer.Argument(help="MODEL@vN, MODEL@latest or MODEL@ALIAS (an alias is followed).")],
    name: Annotated[str, typer.Option("--name", help="Deployment id (default: the model's name).")] = "",
    device: Annotated[str, typer.Option("--device", help="cpu, cuda or cuda:N.")] = "cpu",
    instances: Annotated[int, typer.Option("--instances", min=1, max=INT32_MAX, help="Model instances.")] = 1,
    max_batch_size: Annotated[int, typer.Option("--max-batch-size", min=1, max=INT32_MAX, help="Largest batch.")] = 8,
    preferred: Annotated[
        list[int] | None,
        typer.Option("--preferred-batch-size", min=1, max=INT32_MAX, help="Send at once at this size (repeat)."),
    ] = None,
    delay: Annotated[
        int, typer.Option("--max-queue-delay-us", min=0, max=INT64_MAX, help="Longest wait for a batch to fill, in us.")
    ] = 0,
    max_queue_size: Annotated[int, typer.Option("--max-queue-size", min=0, max=INT32_MAX, help="0: no limit.")] = 0,
    timeout_us: Annotated[
        int, typer.Option("--timeout-us", min=0, max=INT64_MAX, help="Queue timeout per request; 0: none.")
    ] = 0,
    wait: Annotated[bool, typer.Option("--wait/--no-wait", help="Wait until it is READY (or FAILED).")] = True,
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Deploy a registered model version; Triton clients then call it by its deployment id."""
    project = _project(project)
    deployment_id = name or parse_model_ref(model, project).model
    spec = pb.Deployment(
        model=model,
        device=device,
        instances=instances,
        batching=pb.BatchingPolicy(
            max_batch_size=max_batch_size, preferred_batch_sizes=preferred or [], max_queue_delay_us=delay
        ),
        queue=pb.QueuePolicy(max_queue_size=max_queue_size, default_timeout_us=timeout_us),
    )
    client = _client()
    created = client.create(project, deployment_id, spec)
    if wait:
        created = client.wait_settled(created.name)
    emit(as_json, created, lambda: _print(created))
    if created.state == pb.DEPLOYMENT_STATE_FAILED:
        raise typer.Exit(1)


@serve.command("ls")
def list_deployments(project: ProjectOption = None, as_json: Json = False) -> None:
    """Deployments of a project with their versions and states."""
    found = list(_client().list_deployments(_project(project)))

    def render() -> None:
        table = Table("deployment", "model", "version", "device", "state")
        for d in found:
            table.add_row(d.name.rpartition("/")[2], d.model, _version(d), d.device, _state(d))
        console.print(table)

    emit(as_json, found, render)


@serve.command("show", no_args_is_help=True)
def show(deployment: DeploymentArgument, project: ProjectOption = None, as_json: Json = False) -> None:
    """A deployment: model, resolved version, device, batching and queue settings, state."""
    found = _client().get(_name(deployment, _project(project)))
    emit(as_json, found, lambda: _print(found))


@serve.command("undeploy", no_args_is_help=True)
def undeploy(deployment: DeploymentArgument, project: ProjectOption = None) -> None:
    """Delete a deployment: queued requests fail, the model is unloaded."""
    name = _name(deployment, _project(project))
    _client().delete(name)
    console.print(f"deleted {name}")


@serve.command("infer", no_args_is_help=True)
def infer(
    deployment: DeploymentArgument,
    inputs: Annotated[
        list[str], typer.Option("--input", "-i", help="FILE.npy for the only input, or NAME=FILE.npy (repeat).")
    ],
    project: ProjectOption = None,
    as_json: Json = False,
) -> None:
    """Send one request with inputs from .npy files and print the outputs (a quick check)."""
    client = _client()
    found = client.get(_name(deployment, _project(project)))
    model = found.name.rpartition("/")[2]
    names = [t.name for t in client.model_metadata(model).inputs]
    arrays = _read_inputs(inputs, names)
    outputs = client.infer(model, arrays)

    def render() -> None:
        for output_name, array in outputs.items():
            console.print(f"{output_name} {array.dtype} {list(array.shape)}")
            import numpy as np  # only here: numpy costs the CLI's start

            console.print(np.array2string(array, threshold=64))

    emit(as_json, {k: {"shape": list(v.shape), "data": v.tolist()} for k, v in outputs.items()}, render)


@serve.command("drift", no_args_is_help=True)
def drift(deployment: DeploymentArgument, project: ProjectOption = None, as_json: Json = False) -> None:
    """Drift of a deployment's recent inputs and predictions from its model's training data (the monitor's
    report: per feature and for the predictions, Evidently's tests and thresholds)."""
    client = MonitorClient.at(service_address("monitor"))
    report = client.drift_report(_name(deployment, _project(project)))
    emit(as_json, report, lambda: _print_drift(report))


def _print_drift(report: monitor_pb.DriftReport) -> None:
    verdict = Text("DRIFT", style="bold red") if report.dataset_drift else Text("no drift", style="green")
    drifted = sum(c.drifted for c in report.features)
    console.print(Text.assemble((report.name.removesuffix("/driftReport"), "bold"), "  ", verdict))
    console.print(f"model: {report.model_version}")
    console.print(f"reference: {report.reference_dataset} {report.reference_file} ({report.reference_rows} rows)")
    console.print(
        f"window: {report.window_rows} rows; {drifted} of {len(report.features)} features drifted "
        f"({report.drifted_share:.0%}; the dataset drifts at {report.drift_share:.0%})"
    )
    table = Table("column", "kind", "test", "score", "threshold", "drifted")
    columns = list(report.features)
    if report.HasField("prediction"):
        columns.append(report.prediction)
    for c in columns:
        table.add_row(c.column, c.kind, c.test, f"{c.score:.4g}", f"{c.threshold:g}", "yes" if c.drifted else "no")
    console.print(table)


def _read_inputs(specs: list[str], names: list[str]) -> dict[str, np.ndarray]:  # type: ignore[type-arg]
    import numpy as np  # only here: numpy costs the CLI's start

    arrays = {}
    for spec in specs:
        if "=" not in spec and len(names) != 1:
            raise InvalidArgument(f"--input {spec}: the model has inputs {', '.join(names)}; give NAME=FILE.npy")
        name, _, path = spec.partition("=") if "=" in spec else (names[0], "", spec)
        file = Path(path)
        if not file.is_file():
            raise InvalidArgument(f"--input {spec}: no file {file}")
        try:
            loaded = np.load(file, allow_pickle=False)
        except (ValueError, OSError, EOFError) as error:
            raise InvalidArgument(f"--input {spec}: {file} is not a .npy array ({error})") from None
        if not isinstance(loaded, np.ndarray):  # an .npz archive of several arrays
            loaded.close()
            raise InvalidArgument(f"--input {spec}: {file} is an .npz archive; give one .npy file per input")
        arrays[name] = loaded
    return arrays


def _print(d: pb.Deployment) -> None:
    console.print(
        Text.assemble((d.name, "bold"), f"  {_state(d)}" + (f" ({d.state_reason})" if d.state_reason else ""))
    )
    console.print(f"model: {d.model} -> {d.model_version}")
    console.print(f"device: {d.device}  instances: {d.instances}")
    b, q = d.batching, d.queue
    preferred = ",".join(map(str, b.preferred_batch_sizes)) or "-"
    console.print(
        f"batching: max {b.max_batch_size}, preferred {preferred}, delay {b.max_queue_delay_us} us, "
        f"{b.priority_levels} priority level(s)"
    )
    limit = q.max_queue_size or "unlimited"
    console.print(f"queue: {limit}, timeout {q.default_timeout_us or 'none'} us")
