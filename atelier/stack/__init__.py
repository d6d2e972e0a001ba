"""The one-machine stack: which services it runs (`services`), where they listen (`addresses`) and
how `atelier up`/`down`/`status` start, stop and inspect them (`local`)."""

from atelier.stack.addresses import service_address
from atelier.stack.services import SERVICES, StackService

__all__ = ["SERVICES", "StackService", "service_address"]
