"""Calling a deployment as a user does: `tritonclient` over gRPC and over REST (`tritonclient.http`).

The held-out images are the `test` rows of the dataset version's labels.csv, read the way the training
script reads them, so the accuracy measured here is the one the registry recorded.
"""

from __future__ import annotations

import csv
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import numpy as np
import numpy.typing as npt
import tritonclient.grpc as grpcclient
import tritonclient.http as httpclient
from PIL import Image

from atelier.client.credentials import configured_token
from atelier.stack.addresses import address_file, read_address_file
from demo.runner import DemoError

PROTOCOLS = ("gRPC", "REST")
INPUT, OUTPUT = "input", "output"
"""The tensor names `log_model` gives a model with one input and one output."""

Images = npt.NDArray[np.float32]
Labels = npt.NDArray[np.int64]


@dataclass(frozen=True)
class Endpoints:
    """Where the stack's inference service listens: gRPC `host:port` and REST `host:port`."""

    grpc: str
    http: str
    token: str = ""
    """Sent as `authorization: Bearer` with every request when the stack checks access."""

    @classmethod
    def of(cls, home: Path) -> Endpoints:
        """Both through the gateway (`run/gateway.json`): gRPC at its front door, REST v2 at its HTTP address
        (passed through to the inference service), with the logged-in user's token."""
        path = address_file(home, "gateway")
        gateway = read_address_file(path)
        if gateway is None or not gateway.http:
            raise DemoError(f"{path} gives no gRPC and REST address for the gateway")
        return cls(grpc=gateway.address, http=gateway.http, token=configured_token(home))

    @property
    def headers(self) -> dict[str, str]:
        return {"authorization": f"Bearer {self.token}"} if self.token else {}

    def url(self, protocol: str) -> str:
        return self.grpc if protocol == "gRPC" else self.http


def test_split(directory: Path) -> tuple[Images, Labels]:
    """The `test` images of a pulled digits version as [N, 1, 8, 8] floats in 0..1, and their labels."""
    with open(directory / "labels.csv", newline="") as handle:
        rows = [row for row in csv.DictReader(handle) if row.get("split") == "test"]
    if not rows:
        raise DemoError(f"{directory / 'labels.csv'} has no rows in the test split")
    images = np.stack([np.asarray(Image.open(directory / row["file"]), dtype=np.float32) / 255.0 for row in rows])
    return images[:, None, :, :], np.array([int(row["label"]) for row in rows], dtype=np.int64)


class Caller:
    """One tritonclient client of either protocol, asking a deployment for one prediction at a time."""

    def __init__(self, protocol: str, endpoints: Endpoints, model: str) -> None:
        self.protocol, self.model = protocol, model
        self._module: Any = grpcclient if protocol == "gRPC" else httpclient
        self._client: Any = self._module.InferenceServerClient(url=endpoints.url(protocol))
        self._headers = endpoints.headers

    def infer(self, images: Images) -> tuple[str, npt.NDArray[np.float32]]:
        """The model's output for a batch of images, and the version that answered."""
        tensor = self._module.InferInput(INPUT, list(images.shape), "FP32")
        tensor.set_data_from_numpy(images)
        result = self._client.infer(self.model, [tensor], headers=self._headers)
        response = result.get_response()
        version = response.model_version if self.protocol == "gRPC" else response["model_version"]
        return str(version), result.as_numpy(OUTPUT)

    def close(self) -> None:
        self._client.close()


@dataclass(frozen=True)
class Measured:
    """One pass over the test images, one request per image."""

    protocol: str
    correct: int
    latencies_ms: list[float]
    versions: frozenset[str]

    @property
    def total(self) -> int:
        return len(self.latencies_ms)

    @property
    def accuracy(self) -> float:
        return self.correct / self.total

    def percentile(self, q: float) -> float:
        return float(np.percentile(self.latencies_ms, q))

    def describe(self) -> str:
        return (
            f"{self.protocol:<4} accuracy {self.accuracy:.3f} ({self.correct}/{self.total}), latency per request "
            f"p50 {self.percentile(50):.2f} ms, p99 {self.percentile(99):.2f} ms; answered by "
            f"v{', v'.join(sorted(self.versions))}"
        )


def classify(protocol: str, endpoints: Endpoints, model: str, images: Images, labels: Labels) -> Measured:
    """Send every image as its own request, in turn, and compare the predicted class with its label."""
    caller = Caller(protocol, endpoints, model)
    correct, latencies, versions = 0, [], set()
    try:
        for image, label in zip(images, labels, strict=True):
            started = time.perf_counter()
            version, output = caller.infer(image[None])
            latencies.append((time.perf_counter() - started) * 1000)
            versions.add(version)
            correct += int(output[0].argmax() == label)
    finally:
        caller.close()
    return Measured(protocol, correct, latencies, frozenset(versions))


@dataclass
class Tally:
    """What background callers saw: answers by protocol and version, and every failure."""

    answered: Counter[tuple[str, str]] = field(default_factory=Counter)
    failures: list[str] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def count(self, protocol: str, version: str | None = None) -> int:
        with self.lock:
            return sum(n for (p, v), n in self.answered.items() if p == protocol and version in (None, v))


class Callers:
    """A thread per protocol, each with its own client, sending the images round and round until stopped."""

    def __init__(self, endpoints: Endpoints, model: str, images: Images) -> None:
        self.tally = Tally()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._send, args=(p, endpoints, model, images), name=f"caller-{p}", daemon=True)
            for p in PROTOCOLS
        ]

    def __enter__(self) -> Callers:
        for thread in self._threads:
            thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, error: BaseException | None, tb: TracebackType | None) -> None:
        self._stop.set()
        for thread in self._threads:
            thread.join(timeout=30)

    def wait_until(self, condition: Callable[[Tally], bool], timeout: float) -> bool:
        """Whether `condition` held within `timeout` seconds (False at once when a caller stopped)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if condition(self.tally):
                return True
            if not all(thread.is_alive() for thread in self._threads):
                return False
            time.sleep(0.05)
        return condition(self.tally)

    def _send(self, protocol: str, endpoints: Endpoints, model: str, images: Images) -> None:
        with _client(protocol, endpoints, model) as caller:  # created in its thread: tritonclient.http is gevent's
            index = 0
            while not self._stop.is_set():
                try:
                    version, _ = caller.infer(images[index % len(images)][None])
                except Exception as error:  # noqa: BLE001 - every failure is what the demo counts
                    with self.tally.lock:
                        self.tally.failures.append(f"{protocol}: {error}")
                else:
                    with self.tally.lock:
                        self.tally.answered[(protocol, version)] += 1
                index += 1


@contextmanager
def _client(protocol: str, endpoints: Endpoints, model: str) -> Iterator[Caller]:
    caller = Caller(protocol, endpoints, model)
    try:
        yield caller
    finally:
        caller.close()
