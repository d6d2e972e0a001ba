"""What a gRPC front end costs on its own: grpc.aio against Envoy with Python embedded (pyvoy), both
answering KServe's ModelInfer with a canned response, under the same tritonclient load.

The inference service's figures over gRPC are decided by its front end (docs/performance.md,
"Inference vs PyTriton and LitServe"): grpc.aio spends more CPU per call than the rest of a request
does. This measures the floor of two front ends with nothing behind them, so the choice of the next
one rests on numbers:

- `grpc.aio`: the server the services use (uvloop), a generic handler that parses the
  ModelInferRequest and returns a canned ModelInferResponse.
- `pyvoy`: Envoy's HTTP/2 with an ASGI application in an interpreter Envoy embeds (pyvoy, a maintained
  ASGI server on Envoy's dynamic modules). The application speaks gRPC's framing itself, as little as
  the call needs: it parses the same request and answers the same bytes with a `grpc-status` trailer.
- `grpc_asgi`: the same pyvoy, serving a servicer's ModelInfer handler (the same canned answer) through
  `atelier.runtime.grpc_asgi`, the whole protocol: metadata, deadlines, statuses, cancellation.

The load is benchmarks.inference_vs_peers': a fresh process of closed-loop tritonclient gRPC aio callers
(`mlp` input, FP32 [1, 64]). Each cell reports requests/s, p50/p99, and the CPU of the client and of the
server's process tree over the measured window (per request: the figure a shared machine distorts
least). Servers are measured in turn, alternating, each round.

    .venv/bin/python benchmarks/grpc_front_ends.py [--seconds 6] [--rounds 2] [--concurrency 64,1]
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
if str(REPO) not in sys.path:  # run as a script, or imported by pyvoy's embedded interpreter
    sys.path.insert(0, str(REPO))

from atelier.inference.protocol import grpc_service_pb2 as v2  # noqa: E402
from benchmarks.inference_report import Cell  # noqa: E402
from benchmarks.inference_vs_peers.cells import measure  # noqa: E402
from benchmarks.inference_vs_peers.servers import Server, clean_env, free_port, spawn, stop, wait_ready  # noqa: E402
from benchmarks.paths import PYTHON, WORK  # noqa: E402

METHOD = "/inference.GRPCInferenceService/ModelInfer"


def canned_response() -> bytes:
    """The MLP's answer to one sample: FP32 [1, 10] of zeros, serialized once."""
    response = v2.ModelInferResponse(model_name="mlp", model_version="1")
    output = response.outputs.add(name="output", datatype="FP32", shape=[1, 10])
    assert output.name == "output"
    response.raw_output_contents.append(bytes(40))
    return response.SerializeToString()


CANNED = canned_response()

# The gRPC-over-HTTP/2 answer the ASGI application sends: headers, one length-prefixed message, trailers.
_START = {
    "type": "http.response.start",
    "status": 200,
    "headers": [(b"content-type", b"application/grpc")],
    "trailers": True,
}
_BODY = {"type": "http.response.body", "body": b"\x00" + len(CANNED).to_bytes(4, "big") + CANNED}
_TRAILERS = {"type": "http.response.trailers", "headers": [(b"grpc-status", b"0")]}


async def asgi_app(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
    """The pyvoy side: ModelInfer only (other paths answer UNIMPLEMENTED)."""
    if scope["type"] == "lifespan":
        while (message := await receive())["type"] != "lifespan.shutdown":
            await send({"type": "lifespan.startup.complete"})
        await send({"type": "lifespan.shutdown.complete"})
        return
    body = b""
    while True:
        message = await receive()
        body += message.get("body", b"")
        if not message.get("more_body"):
            break
    if scope["path"] != METHOD:
        await send(_START)
        await send({"type": "http.response.body", "body": b""})
        await send({"type": "http.response.trailers", "headers": [(b"grpc-status", b"12")]})
        return
    v2.ModelInferRequest.FromString(body[5:])
    await send(_START)
    await send(_BODY)
    await send(_TRAILERS)


class _CannedServicer:
    """ModelInfer as a servicer handler, for `atelier.runtime.grpc_asgi` (the same answer as the echoes)."""

    response = v2.ModelInferResponse.FromString(CANNED)

    async def ModelInfer(self, request: v2.ModelInferRequest, context: Any) -> v2.ModelInferResponse:
        return self.response


def _runtime_app() -> Callable[..., Any]:
    from atelier.runtime.grpc_asgi import GrpcAsgi, methods_of

    served = GrpcAsgi(methods_of(_CannedServicer(), v2.DESCRIPTOR.services_by_name["GRPCInferenceService"]))

    async def app(scope: dict[str, Any], receive: Callable[[], Any], send: Callable[[Any], Any]) -> None:
        if scope["type"] == "lifespan":
            await asgi_app(scope, receive, send)
            return
        await served(scope, receive, send)

    return app


# The pyvoy side through Atelier's gRPC-over-ASGI module: deadlines, metadata, statuses, cancellation.
runtime_app = _runtime_app()


def serve_grpc_aio(port: str) -> None:
    """The grpc.aio side, in this process (uvloop, as the services run)."""
    import grpc
    import uvloop

    async def infer(request: bytes, context: Any) -> bytes:
        v2.ModelInferRequest.FromString(request)
        return CANNED

    async def main() -> None:
        server = grpc.aio.server()
        handler = grpc.method_handlers_generic_handler(
            "inference.GRPCInferenceService", {"ModelInfer": grpc.unary_unary_rpc_method_handler(infer)}
        )
        server.add_generic_rpc_handlers((handler,))
        server.add_insecure_port(f"127.0.0.1:{port}")
        await server.start()
        await server.wait_for_termination()

    uvloop.run(main())


def _answers(url: str) -> Callable[[], bool]:
    """Whether a ModelInfer call to `url` is answered (the servers offer no health endpoint)."""

    def check() -> bool:
        import grpc

        with grpc.insecure_channel(url) as channel:
            call = channel.unary_unary(METHOD, request_serializer=None, response_deserializer=None)
            try:
                call(v2.ModelInferRequest(model_name="mlp").SerializeToString(), timeout=1)
            except grpc.RpcError:
                return False
        return True

    return check


@contextmanager
def grpc_aio_server() -> Iterator[Server]:
    port = free_port()
    command = [str(PYTHON), __file__, "--serve-grpc-aio", str(port)]
    process = spawn(command, WORK / "front-ends" / "aio.log", clean_env())
    try:
        wait_ready(_answers(f"127.0.0.1:{port}"), process, "the grpc.aio echo")
        yield Server("grpc.aio", process.pid, {"grpc": f"127.0.0.1:{port}"})
    finally:
        stop(process)


@contextmanager
def pyvoy_server(python: Path, app: str = "asgi_app", name: str = "pyvoy") -> Iterator[Server]:
    port = free_port()
    command = [str(python.parent / "pyvoy"), f"benchmarks.grpc_front_ends:{app}", "--port", str(port)]
    process = spawn([*command, "--loop", "uvloop", "--log-level", "error"], WORK / "front-ends" / f"{name}.log",
                    clean_env())  # fmt: skip
    try:
        wait_ready(_answers(f"127.0.0.1:{port}"), process, f"the {name} echo")
        yield Server(name, process.pid, {"grpc": f"127.0.0.1:{port}"})
    finally:
        stop(process)


def per_request_us(cores: float, rate: float) -> float:
    return cores / rate * 1e6 if rate else float("nan")


def render(cells: list[Cell]) -> str:
    lines = [
        "| front end | clients | req/s | p50 ms | p99 ms | errors | server us/request | client us/request |",
        "|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for cell in cells:
        lines.append(
            f"| {cell.server} | {cell.concurrency} | {cell.requests_per_s:,.0f} | {cell.p50_ms:.3f} | "
            f"{cell.p99_ms:.3f} | {cell.errors} | {per_request_us(cell.server_cores, cell.requests_per_s):.0f} | "
            f"{per_request_us(cell.client_cores, cell.requests_per_s):.0f} |"
        )
    lines.append("")
    for concurrency in sorted({c.concurrency for c in cells}, reverse=True):
        aio = [c for c in cells if c.concurrency == concurrency and c.server == "grpc.aio"]
        for name in ("pyvoy", "grpc_asgi"):
            voy = [c for c in cells if c.concurrency == concurrency and c.server == name]
            if not (aio and voy):
                continue
            best_aio, best_voy = max(c.requests_per_s for c in aio), max(c.requests_per_s for c in voy)
            cpu_aio = min(per_request_us(c.server_cores, c.requests_per_s) for c in aio)
            cpu_voy = min(per_request_us(c.server_cores, c.requests_per_s) for c in voy)
            lines.append(
                f"- {concurrency} clients: {name} / grpc.aio = {best_voy / best_aio:.2f}x the requests/s (best of "
                f"each), {cpu_aio / cpu_voy:.2f}x less server CPU per request"
            )
    return "\n".join(lines)


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--seconds", type=float, default=6.0, help="measured seconds per cell (default 6)")
    parser.add_argument("--rounds", type=int, default=2, help="rounds, the servers alternating (default 2)")
    parser.add_argument("--concurrency", default="64,1", help="client counts, comma-separated (default 64,1)")
    args = parser.parse_args(argv)
    try:
        args.concurrency = [int(c) for c in args.concurrency.split(",") if c.strip()]
    except ValueError:
        parser.error(f"--concurrency {args.concurrency!r}: give whole numbers, comma-separated, such as 64,1")
    if args.seconds <= 0 or args.rounds < 1 or not args.concurrency or min(args.concurrency) < 1:
        parser.error("need --seconds > 0, --rounds >= 1 and client counts >= 1")
    return args


def main(argv: Sequence[str] | None = None) -> None:
    raw = list(sys.argv[1:] if argv is None else argv)
    if len(raw) == 2 and raw[0] == "--serve-grpc-aio":
        serve_grpc_aio(raw[1])
        return
    args = parse_args(raw)

    def log(text: str) -> None:
        print(f"  {text}", file=sys.stderr, flush=True)

    python = PYTHON
    cells: list[Cell] = []
    with (
        grpc_aio_server() as aio,
        pyvoy_server(python) as voy,
        pyvoy_server(python, "runtime_app", "grpc_asgi") as runtime,
    ):
        for round_ in range(args.rounds):
            for concurrency in args.concurrency:
                order = (aio, voy, runtime) if round_ % 2 == 0 else (runtime, voy, aio)
                cells.extend(measure(server, "mlp", "grpc", concurrency, args.seconds, log) for server in order)
    print(render(cells))


if __name__ == "__main__":
    main()
