"""Chapter 5, inference: deploy `digits@production`, classify the held-out test images with tritonclient
over gRPC and REST, then promote the other version while clients keep calling: the deployment
follows the alias and not one request fails."""

from __future__ import annotations

import time
from collections import Counter
from typing import Any

from demo.chapter import Chapter, Context
from demo.runner import DemoError, Runner
from demo.serving import PROTOCOLS, Caller, Callers, Endpoints, Images, Tally, classify, test_split

DEPLOYMENT = "digits"
TEST_DIR = "held-out"
WARM_REQUESTS = 50
"""Requests each caller has answered before the promotion, so they are calling all along."""
AFTER_SWITCH = 100
"""Requests the new version answers on each protocol before the callers stop."""
SWITCH_TIMEOUT_SECONDS = 90.0
SHIFTED_REQUESTS = 1500
"""Inverted images sent to show drift: more than the window holds of the held-out ones."""
MIN_WINDOW_ROWS = 100
"""The fewest rows the monitor judges drift on."""
DRIFT_TIMEOUT_SECONDS = 90.0
"""How long the deployment may take to follow the alias (it checks every 2 s, then loads and warms up)."""


def run(context: Context) -> None:
    runner = context.runner
    model = context.refs.get("model", "digits@production")
    dataset = context.refs.get("dataset", "digits@v2")
    runner.step(f"Deploy {model} on the CPU; a deployment of an alias follows the alias")
    runner.atelier("serve", "deploy", model, "--name", DEPLOYMENT, "--device", "cpu", "--max-batch-size", "16")
    serving = _version(runner)
    registered = runner.quiet_json("models", "show", model)["metrics"]["val_accuracy"]
    runner.step(f"Pull {dataset} and keep its held-out test split")
    runner.atelier("data", "pull", dataset, TEST_DIR)
    images, labels = test_split(context.work_dir / TEST_DIR)
    endpoints = Endpoints.of(runner.home)
    runner.info(f"{len(labels)} test images, never trained on; gRPC at {endpoints.grpc}, REST at {endpoints.http}")
    runner.step("Classify each test image in its own request with tritonclient, over gRPC and over REST")
    for protocol in PROTOCOLS:
        measured = classify(protocol, endpoints, DEPLOYMENT, images, labels)
        runner.info(measured.describe())
        if abs(measured.accuracy - registered) > 1.5 / len(labels) or measured.versions != {serving}:
            raise DemoError(f"v{serving} should score the registered {registered:.3f}: {measured.describe()}")
    runner.ok(f"the served model scores what the registry recorded for v{serving}: val_accuracy {registered:.3f}")
    other = context.refs.get("model.other", "")
    if not other:
        raise DemoError("no other registered version of the model to promote")
    switch(runner, endpoints, images, _short(other), serving)
    measured = classify("gRPC", endpoints, DEPLOYMENT, images, labels)
    runner.info(f"now: {measured.describe()}")
    watch_drift(runner, endpoints, images)
    context.refs["deployment"] = DEPLOYMENT


def watch_drift(runner: Runner, endpoints: Endpoints, images: Images) -> None:
    """The monitor compares the deployment's inputs with its model's training data: fine for the held-out
    digits, drift once the inputs change (inverted images, as a new scanner might send)."""
    runner.step("The monitor compares what the deployment sees with the dataset its model was trained on")
    before = _drift(runner, MIN_WINDOW_ROWS)
    runner.info(_verdict(before))
    runner.step(f"A new scanner sends {SHIFTED_REQUESTS} inverted images (white digits on black)")
    caller = Caller("gRPC", endpoints, DEPLOYMENT)
    try:
        for index in range(SHIFTED_REQUESTS):
            caller.infer(1.0 - images[index % len(images)][None])
    finally:
        caller.close()
    after = _drift(runner, int(before.get("windowRows", 0)) + SHIFTED_REQUESTS // 2)
    runner.atelier("serve", "drift", DEPLOYMENT, show_output=False)
    runner.info(_verdict(after))
    if not after.get("datasetDrift"):
        raise DemoError(f"the monitor saw no drift after {SHIFTED_REQUESTS} inverted images: {_verdict(after)}")
    runner.ok("the monitor reports the drift (the atelier_monitor_dataset_drift series and its alert say the same)")
    runner.info("dashboards: deploy/grafana/dashboards/ (start Prometheus with `atelier up --with-prometheus`)")


def _drift(runner: Runner, rows: int) -> dict[str, Any]:
    """The deployment's drift report once its window holds `rows` rows (samples reach the monitor each second)."""
    deadline = time.monotonic() + DRIFT_TIMEOUT_SECONDS
    report: dict[str, Any] = {}
    while time.monotonic() < deadline:
        try:
            report = runner.quiet_json("serve", "drift", DEPLOYMENT)
        except DemoError:
            report = {}
        if int(report.get("windowRows", 0)) >= rows:
            return report
        time.sleep(1.0)
    raise DemoError(f"the monitor's window of {DEPLOYMENT} did not reach {rows} rows: {report or 'no report'}")


def _verdict(report: dict[str, Any]) -> str:
    drifted = sum(1 for f in report.get("features", []) if f.get("drifted"))
    verdict = "DRIFT" if report.get("datasetDrift") else "no drift"
    prediction = "drifted" if report.get("prediction", {}).get("drifted") else "steady"
    return (
        f"{verdict}: {drifted} of {len(report.get('features', []))} pixel features drifted over the last "
        f"{report.get('windowRows', 0)} requests; predictions {prediction}"
    )


def switch(runner: Runner, endpoints: Endpoints, images: Images, other: str, serving: str) -> None:
    """Promote `other` to production while a gRPC and a REST caller keep sending requests."""
    target = other.rpartition("@v")[2]
    runner.step(f"Promote {other} to production by hand (no gate: a rollback, say) while clients keep calling")
    with Callers(endpoints, DEPLOYMENT, images) as callers:
        if not callers.wait_until(lambda t: all(t.count(p) >= WARM_REQUESTS for p in PROTOCOLS), 60):
            raise DemoError(f"the callers did not get going: {'; '.join(_summary(callers.tally))}")
        runner.atelier("models", "promote", other, "production")
        runner.info("the deployment checks its alias every 2 s, loads the new version and warms it up,")
        runner.info("then sends new requests to it while the old one finishes what it holds")
        moved = callers.wait_until(
            lambda t: all(t.count(p, target) >= AFTER_SWITCH for p in PROTOCOLS), SWITCH_TIMEOUT_SECONDS
        )
    tally = callers.tally
    if tally.failures:
        raise DemoError(f"{len(tally.failures)} requests failed during the switch, e.g. {tally.failures[0]}")
    if not moved:
        raise DemoError(f"no switch to v{target} within {SWITCH_TIMEOUT_SECONDS:.0f}s: {'; '.join(_summary(tally))}")
    runner.atelier("serve", "ls")
    if _version(runner) != target:
        raise DemoError(f"`atelier serve show {DEPLOYMENT}` does not name v{target}")
    total = sum(tally.answered.values())
    runner.ok(f"switched from v{serving} to v{target} while both clients called: 0 of {total} requests failed")
    for line in _summary(tally):
        runner.info(f"  {line}")


def _version(runner: Runner) -> str:
    """The registry version number the deployment serves now."""
    deployed = runner.quiet_json("serve", "show", DEPLOYMENT)
    if deployed.get("state") != "DEPLOYMENT_STATE_READY":
        raise DemoError(f"deployment {DEPLOYMENT} is {deployed.get('state')}: {deployed.get('stateReason', '')}")
    return str(deployed["modelVersion"]).rpartition("/v")[2]


def _summary(tally: Tally) -> list[str]:
    """A line per protocol: requests sent, and how many each version answered (oldest version first)."""
    with tally.lock:
        answered = dict(tally.answered)
        failed = Counter(failure.partition(":")[0] for failure in tally.failures)
    lines = []
    for protocol in PROTOCOLS:
        by_version = sorted(((v, n) for (p, v), n in answered.items() if p == protocol), key=lambda vn: int(vn[0]))
        which = ", ".join(f"{n} answered by v{v}" for v, n in by_version) or "none answered"
        sent = sum(n for _, n in by_version) + failed[protocol]
        lines.append(f"{protocol}: {sent} requests, {which}, {failed[protocol]} failed")
    return lines


def _short(version: str) -> str:
    """`projects/P/models/M/versions/vN` as `M@vN`."""
    parts = version.split("/")
    return f"{parts[3]}@{parts[5]}" if len(parts) == 6 else version


CHAPTER = Chapter(
    title="Inference",
    summary="Serve the production model, call it with tritonclient (gRPC and REST), switch versions live.",
    run=run,
)
