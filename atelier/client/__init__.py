"""Typed clients over the generated stubs: deadlines, retries and Atelier errors.

The CLI and the SDK use these and nothing lower. Each client's module is imported when first
named, so that `atelier data push` does not load the registry's stubs.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from atelier.client.channel import connect
    from atelier.client.data import DataClient
    from atelier.client.registry import RegistryClient

__all__ = ["DataClient", "RegistryClient", "connect"]
_MODULES = {
    "DataClient": "atelier.client.data",
    "RegistryClient": "atelier.client.registry",
    "connect": "atelier.client.channel",
}


def __getattr__(name: str) -> Any:
    module = _MODULES.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module), name)
