"""A client pointed at a server that is not its service says so, rather than 'Method not found!'."""

from __future__ import annotations

from concurrent import futures

import grpc
import pytest

from atelier.client.data import DataClient
from atelier.errors import FailedPrecondition


def test_a_server_without_the_service_is_named() -> None:
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=1))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        client = DataClient.at(f"127.0.0.1:{port}")
        with pytest.raises(FailedPrecondition, match=f"the server at 127.0.0.1:{port} does not answer data calls"):
            client.get_project("projects/p")
    finally:
        server.stop(None)
