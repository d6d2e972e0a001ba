"""A large push through the REST gateway, run as its own process (`python -m gateway`), and the gateway's
peak resident memory (VmHWM from /proc) while it carries it.

The body is UploadChunks request messages as length-delimited protobuf frames (`application/x-protobuf`),
4 MiB chunks, streamed by httpx with chunked transfer encoding to a real data service (its own process).
The same few distinct chunks are sent again and again, so the data service verifies every byte but
stores only those; what crosses the gateway is the whole size.

Then a file of random bytes (pushed with the SDK straight to the data service) is downloaded through
the gateway as raw bytes (`Accept: application/octet-stream`, the ReadFile route), the gateway's peak
reset before it (`/proc/PID/clear_refs`), so each direction has its own peak.

    .venv/bin/python benchmarks/gateway_memory.py --gib 2 --download-gib 1
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import blake3
import httpx

from atelier.data.v1 import data_service_pb2 as rpc

CHUNK_BYTES = 4 * 1024 * 1024
DISTINCT_CHUNKS = 8


def varint(value: int) -> bytes:
    out = bytearray()
    while True:
        byte = value & 0x7F
        value >>= 7
        out.append(byte | (0x80 if value else 0))
        if not value:
            return bytes(out)


def frames(total_bytes: int, parent: str = "") -> Iterator[bytes]:
    """`total_bytes` of chunks as delimited UploadChunksRequest frames (a few distinct ones, repeated)."""
    made = []
    for index in range(DISTINCT_CHUNKS):
        data = os.urandom(CHUNK_BYTES)
        body = rpc.UploadChunksRequest(
            parent=parent, chunks=[rpc.Chunk(digest=blake3.blake3(data).digest(), data=data)]
        ).SerializeToString()
        made.append(varint(len(body)) + body)
        del index
    for index in range(total_bytes // CHUNK_BYTES):
        yield made[index % DISTINCT_CHUNKS]


def status_kib(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise KeyError(key)


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_for_address(path: Path, process: subprocess.Popen[bytes], what: str) -> dict[str, str]:
    for _ in range(600):
        if process.poll() is not None:
            raise RuntimeError(f"{what} exited with {process.returncode}")
        try:
            content: dict[str, str] = json.loads(path.read_text())
            return content
        except (OSError, ValueError):
            time.sleep(0.1)
    raise RuntimeError(f"{what} did not publish {path}")


@contextmanager
def processes(home: Path) -> Iterator[tuple[str, int, int, str]]:
    """A data service and a gateway in front of it, each its own process: (gateway's REST address,
    gateway pid, data pid, data address)."""
    data_file = home / "data.json"
    with open(home / "data.log", "wb") as logs:
        data = subprocess.Popen(
            [sys.executable, "-m", "services.data"],
            env={
                **_environment(home),
                "ATELIER_DATA_PORT": "0",
                "ATELIER_DATA_ADDRESS_FILE": str(data_file),
                "ATELIER_DATA_METRICS_PORT": "-1",
            },
            stdout=logs,
            stderr=logs,
        )
        try:
            data_address = wait_for_address(data_file, data, "the data service")["address"]
            with gateway_process(home, {"data": data_address}) as (http, gateway_pid):
                yield http, gateway_pid, data.pid, data_address
        finally:
            data.terminate()
            data.wait(30)


@contextmanager
def gateway_process(home: Path, addresses: dict[str, str]) -> Iterator[tuple[str, int]]:
    """`python -m gateway` for services at `addresses`: (its REST address, its pid)."""
    address_file = home / "gateway.json"
    variables = {f"ATELIER_{name.upper()}_ADDRESS": address for name, address in addresses.items()}
    with open(home / "gateway.log", "wb") as logs:
        gateway = subprocess.Popen(
            [sys.executable, "-m", "gateway"],
            env={
                **_environment(home),
                **variables,
                "ATELIER_GATEWAY_ADDRESS_FILE": str(address_file),
                "ATELIER_GATEWAY_METRICS_PORT": "-1",
            },
            stdout=logs,
            stderr=logs,
        )
        try:
            yield wait_for_address(address_file, gateway, "the gateway")["http"], gateway.pid
        finally:
            gateway.terminate()
            gateway.wait(30)


def _environment(home: Path) -> dict[str, str]:
    return {**os.environ, "ATELIER_HOME": str(home), "ATELIER_AUTH": "off", "PYTHONUNBUFFERED": "1"}


def push(http: str, total_bytes: int, project: str = "lab") -> dict[str, str]:
    """Create the project, push `total_bytes` through REST; the UploadChunks answer."""
    with httpx.Client(base_url=f"http://{http}", timeout=600) as client:
        created = client.post("/v1/projects", params={"projectId": project}, json={})
        if created.status_code not in (200, 409):
            raise RuntimeError(created.text)
        answer = client.post(
            f"/v1/projects/{project}/chunks:upload",
            content=frames(total_bytes),
            headers={"Content-Type": "application/x-protobuf", "X-Request-Timeout": "300"},
        )
        if answer.status_code != 200:
            raise RuntimeError(answer.text)
        result: dict[str, str] = answer.json()
        return result


def download(http: str, data_address: str, home: Path, total_bytes: int) -> tuple[str, int]:
    """Push a file of `total_bytes` random bytes with the SDK, then read it back through the gateway as raw
    bytes: (its version, bytes read)."""
    from atelier.client import DataClient
    from atelier.datasets.push import push as push_directory
    from atelier.names import parse_dataset_ref

    folder = home / "big"
    folder.mkdir()
    with open(folder / "blob.bin", "wb") as out:
        for _ in range(total_bytes // CHUNK_BYTES):
            out.write(os.urandom(CHUNK_BYTES))
    client = DataClient.at(data_address)
    try:
        version = push_directory(client, folder, parse_dataset_ref("big", "lab")).version.name
    finally:
        client.close()
    read = 0
    headers = {"Accept": "application/octet-stream", "X-Request-Timeout": "300"}
    with httpx.stream(
        "GET", f"http://{http}/v1/{version}:readFile", params={"path": "blob.bin"}, headers=headers, timeout=600
    ) as answer:
        for piece in answer.iter_raw():
            read += len(piece)
    return version, read


def measure(total_bytes: int, download_bytes: int = 0) -> dict[str, float]:
    with tempfile.TemporaryDirectory() as tmp, processes(Path(tmp)) as (http, gateway_pid, data_pid, data_address):
        before_kib = status_kib(gateway_pid, "VmRSS")
        cpu_before, data_cpu_before = cpu_seconds(gateway_pid), cpu_seconds(data_pid)
        started = time.perf_counter()
        answer = push(http, total_bytes)
        wall = time.perf_counter() - started
        if int(answer["receivedChunks"]) != total_bytes // CHUNK_BYTES:
            raise RuntimeError(f"the data service received {answer}")
        figures = {
            "pushed_mib": total_bytes / 2**20,
            "gateway_rss_before_mib": before_kib / 1024,
            "gateway_peak_rss_mib": status_kib(gateway_pid, "VmHWM") / 1024,
            "wall_seconds": wall,
            "gateway_cpu_seconds": cpu_seconds(gateway_pid) - cpu_before,
            "data_cpu_seconds": cpu_seconds(data_pid) - data_cpu_before,
        }
        if download_bytes:
            Path(f"/proc/{gateway_pid}/clear_refs").write_text("5")  # resets VmHWM to the current RSS
            cpu_before = cpu_seconds(gateway_pid)
            started = time.perf_counter()
            _, read = download(http, data_address, Path(tmp), download_bytes)
            if read != download_bytes:
                raise RuntimeError(f"read {read} of {download_bytes} bytes")
            figures.update(
                {
                    "downloaded_mib": read / 2**20,
                    "download_gateway_peak_rss_mib": status_kib(gateway_pid, "VmHWM") / 1024,
                    "push_and_download_wall_seconds": time.perf_counter() - started,
                    "download_gateway_cpu_seconds": cpu_seconds(gateway_pid) - cpu_before,
                }
            )
        return figures


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--gib", type=float, default=2.0, help="How much to push (GiB).")
    parser.add_argument("--download-gib", type=float, default=0.0, help="Size of the file to download (GiB).")
    parser.add_argument("--json", action="store_true", help="Print the figures as JSON.")
    args = parser.parse_args()
    figures = measure(
        int(args.gib * 2**30) // CHUNK_BYTES * CHUNK_BYTES, int(args.download_gib * 2**30) // CHUNK_BYTES * CHUNK_BYTES
    )
    if args.json:
        print(json.dumps(figures))
        return
    for key, value in figures.items():
        print(f"{key:>24}: {value:,.1f}")


if __name__ == "__main__":
    main()
