"""A port held for a server that binds it later (the inference service's Envoy)."""

from __future__ import annotations

import errno
import socket

import pytest

from atelier.stack.addresses import reserved_port


def test_a_reserved_port_is_kept_from_others_and_open_to_a_reuseport_listener() -> None:
    with reserved_port() as port:
        with socket.socket() as other, pytest.raises(OSError, match="in use") as taken:
            other.bind(("127.0.0.1", port))
        assert taken.value.errno == errno.EADDRINUSE
        with socket.socket() as listener:
            listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            listener.bind(("127.0.0.1", port))
            listener.listen()
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                accepted, _ = listener.accept()
                accepted.close()
