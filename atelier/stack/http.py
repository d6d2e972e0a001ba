"""Whether an HTTP API of the stack (the gateway's REST side) answers."""

from __future__ import annotations

import urllib.error
import urllib.request

_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))
"""An opener that ignores `http_proxy`: the stack is on this machine."""


def http_ready(address: str, path: str = "/healthz", timeout: float = 1.0) -> bool:
    """Whether `http://<address><path>` answers 200 (False for an empty address)."""
    if not address:
        return False
    try:
        with _DIRECT.open(f"http://{address}{path}", timeout=timeout) as response:
            return bool(response.status == 200)
    except (urllib.error.URLError, OSError):
        return False
