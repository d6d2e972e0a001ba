"""REST through the gateway to real services: resources, custom verbs, query parameters, errors, streams."""

from __future__ import annotations

import json
from typing import Any

from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

from atelier.registry.v1 import resources_pb2 as registry_pb
from atelier.scheduler.v1 import resources_pb2 as pb
from tests.integration.gateway.conftest import Stack

TRACE_ID = "4bf92f3577b34da6a3ce929d0e0e4736"


def error_of(response: Any, status: int, code: str) -> dict[str, Any]:
    """The AIP-193 error of a response, checked for its HTTP status and gRPC code name."""
    assert response.status_code == status, response.text
    error: dict[str, Any] = response.json()["error"]
    assert error["code"] == status
    assert error["status"] == code
    return error


def reason(error: dict[str, Any]) -> str:
    (info,) = [d for d in error["details"] if d["@type"] == "type.googleapis.com/google.rpc.ErrorInfo"]
    assert info["domain"] == "atelier.dev"
    return str(info["reason"])


def register_node(stack: Stack, node_id: str = "n1") -> None:
    """A node with one A100 (registered over REST: body `node`, `nodeId` from the query string)."""
    from google.protobuf import json_format

    from services.scheduler.agent.discovery import DeclaredInventory
    from services.scheduler.catalogue import card_spec
    from tests.integration.scheduler.conftest import inventory

    found = DeclaredInventory(inventory("A100-80"), card_spec).inventory()
    node = pb.Node(address=f"{node_id}.lab", cards=found.cards, links=found.links, discovery="declared")
    response = stack.rest.post("/v1/nodes", params={"nodeId": node_id}, json=json_format.MessageToDict(node))
    assert response.status_code == 200, response.text
    assert response.json()["name"] == f"nodes/{node_id}"


def submit(stack: Stack, project: str = "lab", **job: Any) -> dict[str, Any]:
    if not stack.rest.get("/v1/nodes").json().get("nodes"):
        register_node(stack)
    body = {"command": ["python", "train.py"], "resources": {"gpusPerNode": 1}, **job}
    response = stack.rest.post(f"/v1/projects/{project}/jobs", json=body)
    assert response.status_code == 200, response.text
    created: dict[str, Any] = response.json()
    return created


def test_a_dataset_version_made_with_the_sdk_reads_back_over_rest(stack: Stack, tmp_path: Any) -> None:
    version = push_digits(stack, tmp_path)
    response = stack.rest.get(f"/v1/{version.name}")
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["name"] == version.name
    assert body["fileCount"] == str(version.file_count)  # int64 as a string, lowerCamelCase
    assert body["createTime"].endswith("Z")  # RFC 3339
    project = stack.rest.get("/v1/projects/lab").json()
    assert project["name"] == "projects/lab"


def test_a_job_is_created_from_the_body_read_cancelled_and_listed(stack: Stack) -> None:
    stack.data.ensure_project("lab")
    created = submit(stack, maxRetries=2)
    name = created["name"]
    assert name.startswith("projects/lab/jobs/")
    assert created["state"].startswith("JOB_STATE_")  # enums by name
    got = stack.rest.get(f"/v1/{name}").json()
    assert got["name"] == name
    assert got["command"] == ["python", "train.py"]
    assert got["maxRetries"] == 2
    cancelled = stack.rest.post(f"/v1/{name}:cancel", json={})
    assert cancelled.status_code == 200, cancelled.text
    assert cancelled.json()["state"] == "JOB_STATE_CANCELLED"
    second = submit(stack)["name"]
    listed = stack.rest.get("/v1/projects/lab/jobs", params=[("states", "JOB_STATE_CANCELLED")]).json()
    assert [j["name"] for j in listed["jobs"]] == [name]
    others = [
        ("states", state) for state in map(pb.JobState.Name, pb.JobState.values()) if state != "JOB_STATE_CANCELLED"
    ]
    not_cancelled = stack.rest.get("/v1/projects/lab/jobs", params=others).json()
    assert [j["name"] for j in not_cancelled["jobs"]] == [second]  # repeated enum parameters, by name
    page = stack.rest.get("/v1/projects/lab/jobs", params={"pageSize": "1"}).json()
    assert len(page["jobs"]) == 1
    assert page["nextPageToken"]
    rest = stack.rest.get("/v1/projects/lab/jobs", params={"page_size": "1", "pageToken": page["nextPageToken"]})
    assert {j["name"] for j in rest.json()["jobs"]} | {page["jobs"][0]["name"]} == {name, second}


def test_a_run_search_takes_its_filter_from_the_query_string(stack: Stack) -> None:
    stack.data.ensure_project("lab")
    experiment = stack.registry.create_experiment("lab", "mnist")
    good = stack.registry.create_run(experiment.name, registry_pb.Run(display_name="good"))
    bad = stack.registry.create_run(experiment.name, registry_pb.Run(display_name="bad"))
    stack.registry.log(good.name, metrics=[registry_pb.MetricPoint(key="accuracy", value=0.93)])
    stack.registry.log(bad.name, metrics=[registry_pb.MetricPoint(key="accuracy", value=0.41)])
    response = stack.rest.get(f"/v1/{experiment.name}/runs", params={"filter": "metrics.accuracy > 0.9"})
    assert response.status_code == 200, response.text
    assert [r["name"] for r in response.json()["runs"]] == [good.name]


def test_errors_carry_the_mapped_status_the_aip_193_body_and_the_reason(stack: Stack, tmp_path: Any) -> None:
    missing = error_of(stack.rest.get("/v1/projects/nobody/datasets/nothing"), 404, "NOT_FOUND")
    assert "nobody" in missing["message"]
    assert reason(missing) == "NOT_FOUND"
    created = stack.rest.post("/v1/projects", params={"projectId": "lab"}, json={"description": "the lab"})
    assert created.status_code == 200, created.text
    assert created.json()["description"] == "the lab"
    again = error_of(stack.rest.post("/v1/projects", params={"projectId": "lab"}), 409, "ALREADY_EXISTS")
    assert reason(again) == "ALREADY_EXISTS"
    bad_id = error_of(stack.rest.post("/v1/projects", params={"projectId": "Not Valid!"}), 400, "INVALID_ARGUMENT")
    assert reason(bad_id) == "INVALID_ARGUMENT"
    version = push_digits(stack, tmp_path)
    dataset = version.name.rsplit("/versions/", 1)[0]
    tagged = stack.rest.post(f"/v1/{dataset}/tags", params={"tagId": "best"}, json={"version": version.name})
    assert tagged.status_code == 200, tagged.text  # body: "tag", tag_id from the query string
    assert tagged.json()["name"] == f"{dataset}/tags/best"
    refused = error_of(stack.rest.delete(f"/v1/{dataset}"), 400, "FAILED_PRECONDITION")
    assert reason(refused) == "FAILED_PRECONDITION"
    assert "best" in refused["message"]
    forced = stack.rest.delete(f"/v1/{dataset}", params={"force": "true"})
    assert forced.status_code == 200, forced.text
    error_of(stack.rest.get(f"/v1/{dataset}"), 404, "NOT_FOUND")


def push_digits(stack: Stack, tmp_path: Any) -> Any:
    from atelier.datasets.push import push
    from atelier.names import parse_dataset_ref
    from tests.integration.data.helpers import write_tree

    write_tree(tmp_path / "digits", {"labels.csv": b"a,1\n", "images/0.png": b"\x89PNG"})
    return push(stack.data, tmp_path / "digits", parse_dataset_ref("digits", "lab")).version


def test_model_versions_are_registered_in_one_batch_over_rest(stack: Stack, tmp_path: Any) -> None:
    from atelier.datasets.push import store_artifact

    (tmp_path / "weights.pt").write_bytes(b"weights")
    artifact = store_artifact(stack.data, "lab", tmp_path / "weights.pt").name
    model = "projects/lab/models/sweep"
    requests = [
        {"modelVersion": {"artifact": artifact, "format": "MODEL_FORMAT_TORCHSCRIPT", "metrics": {"acc": a}}}
        for a in (0.5, 0.7)
    ]
    response = stack.rest.post(f"/v1/{model}/versions:batchCreate", json={"requests": requests})
    assert response.status_code == 200, response.text
    created = response.json()["modelVersions"]
    assert [(v["name"], v["metrics"]["acc"]) for v in created] == [
        (f"{model}/versions/v1", 0.5),
        (f"{model}/versions/v2", 0.7),
    ]
    requests.insert(1, {"modelVersion": {"artifact": artifact}})
    refused = stack.rest.post(f"/v1/{model}/versions:batchCreate", json={"requests": requests})
    assert error_of(refused, 400, "INVALID_ARGUMENT")["message"].startswith("requests[1]: model_version.format")
    assert [v.number for v in stack.registry.list_versions(model)] == [2, 1]


def test_a_malformed_body_or_parameter_is_a_400_naming_the_field(stack: Stack) -> None:
    not_json = error_of(stack.rest.post("/v1/projects/lab/jobs", content=b"{oops"), 400, "INVALID_ARGUMENT")
    assert "not valid JSON" in not_json["message"]
    wrong_type = stack.rest.post("/v1/projects/lab/jobs", json={"command": "python", "maxRetries": "many"})
    assert "maxRetries" in error_of(wrong_type, 400, "INVALID_ARGUMENT")["message"] or "command" in wrong_type.text
    unknown = error_of(stack.rest.get("/v1/projects/lab/jobs", params={"colour": "red"}), 400, "INVALID_ARGUMENT")
    assert "colour" in unknown["message"]
    assert "pageSize" in unknown["message"]  # the allowed names
    enum = error_of(stack.rest.get("/v1/projects/lab/jobs", params={"states": "SLEEPING"}), 400, "INVALID_ARGUMENT")
    assert "SLEEPING" in enum["message"]
    number = error_of(stack.rest.get("/v1/projects/lab/jobs", params={"pageSize": "ten"}), 400, "INVALID_ARGUMENT")
    assert "pageSize" in number["message"]
    timeout = stack.rest.get("/v1/projects/lab/jobs", headers={"X-Request-Timeout": "soon"})
    assert "X-Request-Timeout" in error_of(timeout, 400, "INVALID_ARGUMENT")["message"]
    nested = error_of(stack.rest.post("/v1/projects/lab/jobs", content=b"[" * 100_000), 400, "INVALID_ARGUMENT")
    assert "nests too deeply" in nested["message"]
    huge = stack.rest.post("/v1/projects/lab/jobs", content=b'{"command": ["' + b"x" * (9 * 1024 * 1024) + b'"]}')
    assert "at most 8388608 fit one request" in error_of(huge, 400, "INVALID_ARGUMENT")["message"]


def test_an_unknown_route_is_a_404_in_the_same_shape(stack: Stack) -> None:
    error = error_of(stack.rest.get("/v1/projects/lab/unicorns"), 404, "NOT_FOUND")
    assert "/v1/projects/lab/unicorns" in error["message"]
    assert reason(error) == "NOT_FOUND"
    wrong_method = stack.rest.put("/v1/projects/lab")
    assert wrong_method.status_code == 405
    assert wrong_method.json()["error"]["code"] == 405
    not_a_post = stack.rest.post("/healthz")
    assert not_a_post.status_code == 405
    assert not_a_post.json()["error"] == {**not_a_post.json()["error"], "code": 405, "status": "UNIMPLEMENTED"}
    assert "POST is not allowed on /healthz" in not_a_post.json()["error"]["message"]


def write_log(stack: Stack, name: str, *texts: str) -> None:
    lines = [pb.LogLine(text=t, stream=pb.LOG_STREAM_STDOUT) for t in texts]
    stack.agents.write_logs(name, lines)


def test_job_logs_stream_as_ndjson_and_as_server_sent_events(stack: Stack) -> None:
    stack.data.ensure_project("lab")
    name = submit(stack)["name"]
    write_log(stack, name, "epoch 1", "epoch 2")
    with stack.rest.stream("GET", f"/v1/{name}:readLogs") as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("application/x-ndjson")
        items = [json.loads(line) for line in response.iter_lines() if line]
    texts = [line["text"] for item in items for line in item["result"].get("lines", [])]
    assert texts == ["epoch 1", "epoch 2"]
    with stack.rest.stream("GET", f"/v1/{name}:readLogs", headers={"Accept": "text/event-stream"}) as response:
        assert response.headers["content-type"].startswith("text/event-stream")
        events = [json.loads(line.removeprefix("data: ")) for line in response.iter_lines() if line.startswith("data:")]
    assert [line["text"] for e in events for line in e["result"].get("lines", [])] == ["epoch 1", "epoch 2"]
    first = next(item["result"]["lines"][0] for item in items if item["result"].get("lines"))
    after = stack.rest.get(f"/v1/{name}:readLogs", params={"offset": first["offset"]})  # int64 from a string
    later = [json.loads(x)["result"] for x in after.text.splitlines()]
    assert [line["text"] for r in later for line in r.get("lines", [])] == ["epoch 2"]


def test_a_stream_that_fails_at_once_gets_its_http_status(stack: Stack) -> None:
    error_of(stack.rest.get("/v1/projects/lab/jobs/ghost:readLogs"), 404, "NOT_FOUND")


def test_a_service_that_is_down_is_a_503_naming_it(stack: Stack) -> None:
    error = error_of(stack.rest.get("/v1/projects/lab/deployments/d"), 503, "UNAVAILABLE")
    assert "inference" in error["message"]
    assert "127.0.0.1:1" in error["message"]
    health = stack.rest.get("/healthz").json()
    assert health["unreachable"] == ["inference", "monitor"]
    assert health["services"]["data"] == "SERVING"


def test_request_ids_and_trace_context_go_in_and_out(stack: Stack, spans: InMemorySpanExporter) -> None:
    stack.data.ensure_project("lab")
    traceparent = f"00-{TRACE_ID}-00f067aa0ba902b7-01"
    response = stack.rest.get("/v1/projects/lab", headers={"X-Request-Id": "req-42", "traceparent": traceparent})
    assert response.headers["x-request-id"] == "req-42"
    assert response.headers["traceparent"].split("-")[1] == TRACE_ID
    generated = stack.rest.get("/v1/projects/lab").headers["x-request-id"]
    assert generated
    assert generated != stack.rest.get("/v1/projects/lab").headers["x-request-id"]
    traced = [s for s in spans.get_finished_spans() if s.context.trace_id == int(TRACE_ID, 16)]
    names = {s.name for s in traced}
    assert "GET /v1/projects/{project}" in names  # named by its route, not its path
    assert "/atelier.data.v1.DataService/GetProject" in names  # the client (and server) span of the call


def test_following_a_quiet_job_starts_at_once_with_its_state_then_carries_its_lines(stack: Stack) -> None:
    stack.data.ensure_project("lab")
    name = submit(stack)["name"]
    with stack.rest.stream("GET", f"/v1/{name}:readLogs", params={"follow": "true"}) as response:
        assert response.status_code == 200
        items = (json.loads(line)["result"] for line in response.iter_lines() if line)
        first = next(items)  # before any line was written: the stream is open, and says where the job stands
        assert "lines" not in first
        assert first["state"].startswith("JOB_STATE_")
        write_log(stack, name, "epoch 1")
        later = next(item for item in items if item.get("lines"))
    assert [line["text"] for line in later["lines"]] == ["epoch 1"]
