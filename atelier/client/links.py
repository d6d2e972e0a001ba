"""A service's clients of the registry and the data service, made on first use (the services that call
both: inference loading models, the monitor building drift references)."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from atelier.client.data import DataClient
from atelier.client.registry import RegistryClient


@dataclass
class Links:
    """Clients of the registry and the data service, made on first use from addresses looked up then
    (in a local stack, a peer may publish its address after this service starts)."""

    registry_address: Callable[[], str]
    data_address: Callable[[], str]
    _registry: RegistryClient | None = None
    _data: DataClient | None = None

    def registry(self) -> RegistryClient:
        if self._registry is None:
            self._registry = RegistryClient.at(self.registry_address())
        return self._registry

    def data(self) -> DataClient:
        if self._data is None:
            self._data = DataClient.at(self.data_address())
        return self._data

    def close(self) -> None:
        for client in (self._registry, self._data):
            if client is not None:
                client.close()
