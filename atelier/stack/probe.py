"""`python -m atelier.stack.probe HOST:PORT [SERVICE]`: a container's health check.

Exits 0 when the gRPC server at HOST:PORT says SERVING to a `grpc.health.v1` check of its overall health (or
of SERVICE's: the gateway's front door answers for the whole stack, and for `iam`, its own), 1 otherwise,
printing what it found in one line. (Kubernetes checks gRPC health itself; Compose and other
runtimes run a command inside the container, which has Python but no `grpc_health_probe`.)
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from atelier.stack.local import Health, check_health


def main(argv: Sequence[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if not 1 <= len(args) <= 2 or ":" not in args[0]:
        print("usage: python -m atelier.stack.probe HOST:PORT [SERVICE]", file=sys.stderr)
        return 2
    service = args[1] if len(args) == 2 else ""
    health = check_health(args[0], timeout=3.0, service=service)
    print(f"{args[0]}{' ' + service if service else ''}: {health.value}")
    return 0 if health is Health.SERVING else 1


if __name__ == "__main__":
    sys.exit(main())
