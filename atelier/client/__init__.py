"""Typed clients over the generated stubs: deadlines, retries and Atelier errors.

The CLI and the SDK use these and nothing lower.
"""

from atelier.client.channel import connect
from atelier.client.data import DataClient
from atelier.client.registry import RegistryClient

__all__ = ["DataClient", "RegistryClient", "connect"]
