"""The gRPC front door: one address for every Atelier service (see `gateway.frontdoor.server`)."""

from gateway.frontdoor.server import FrontDoor, LocalService

__all__ = ["FrontDoor", "LocalService"]
