"""The gateway as its own process (`python -m gateway`): a large push streams through it without being
held in memory, and a client that goes away mid-upload cancels the service call behind (which had the
upload's long deadline)."""

from __future__ import annotations

import asyncio
import socket
import threading
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc

from atelier.client.channel import MAX_MESSAGE_BYTES
from atelier.data.v1 import data_service_pb2 as rpc
from benchmarks.gateway_memory import CHUNK_BYTES, frames, gateway_process, measure

PUSH_BYTES = 512 * 1024 * 1024
PEAK_LIMIT_MIB = 200
SERVICE = "atelier.data.v1.DataService"


def test_a_512_mib_push_keeps_the_gateway_under_200_mib_resident() -> None:
    figures = measure(PUSH_BYTES)  # the data service really receives and verifies every chunk
    assert figures["pushed_mib"] == 512
    assert figures["gateway_peak_rss_mib"] < PEAK_LIMIT_MIB, figures


@dataclass
class RecordingData:
    """UploadChunks that counts the messages reaching it and notices being cancelled."""

    received: threading.Event = field(default_factory=threading.Event)
    cancelled: threading.Event = field(default_factory=threading.Event)
    messages: int = 0
    time_remaining: float | None = None
    _server: Any = None

    async def start(self) -> str:
        server = grpc.aio.server(options=[("grpc.max_receive_message_length", MAX_MESSAGE_BYTES)])
        handler = grpc.stream_unary_rpc_method_handler(
            self.upload, rpc.UploadChunksRequest.FromString, rpc.UploadChunksResponse.SerializeToString
        )
        server.add_generic_rpc_handlers([grpc.method_handlers_generic_handler(SERVICE, {"UploadChunks": handler})])
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        self._server = server
        return f"127.0.0.1:{port}"

    async def stop(self) -> None:
        await self._server.stop(0)

    async def upload(
        self, requests: AsyncIterator[rpc.UploadChunksRequest], context: grpc.aio.ServicerContext[Any, Any]
    ) -> rpc.UploadChunksResponse:
        self.time_remaining = context.time_remaining()
        try:
            async for _ in requests:
                self.messages += 1
                self.received.set()
            # A cancelled client stream raises CancelledError here, or, when grpc's reader sees the
            # cancellation first, ends the request iterator as a half-close would; the task is cancelled
            # right after. A gateway that half-closed instead would leave this waiting, uncancelled.
            await asyncio.sleep(60)
        except asyncio.CancelledError:
            self.cancelled.set()
            raise
        return rpc.UploadChunksResponse(received_chunks=self.messages)


def test_a_client_that_disconnects_mid_upload_cancels_the_call_behind(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path
) -> None:
    data = RecordingData()
    address = serve(lambda: data)
    with gateway_process(tmp_path, {"data": address}) as (http, _):
        host, port = http.rsplit(":", 1)
        with socket.create_connection((host, int(port)), timeout=30) as client:
            head = (
                "POST /v1/projects/lab/chunks:upload HTTP/1.1\r\n"
                f"Host: {http}\r\nContent-Type: application/x-protobuf\r\nTransfer-Encoding: chunked\r\n\r\n"
            )
            client.sendall(head.encode())
            for frame in frames(2 * CHUNK_BYTES):  # two of many: the body is never finished
                client.sendall(f"{len(frame):x}\r\n".encode() + frame + b"\r\n")
            assert data.received.wait(30)
        # The connection is closed with the body unfinished.
        assert data.cancelled.wait(30)
    assert data.messages >= 1
    # Without X-Request-Timeout an upload gets the longest deadline (300 s), not the 30 s of other calls.
    assert data.time_remaining is not None
    assert 200 < data.time_remaining <= 300
