"""Where the CLI and SDK find their token, and how every call carries it.

`ATELIER_TOKEN` wins; otherwise the credentials file `atelier login` writes (mode 0600):
`$ATELIER_CREDENTIALS`, by default `$ATELIER_HOME/credentials`, next to the stack's address files.
Inside a service, a call made while handling a caller's request carries that caller's credentials
instead, so the next service checks the same person.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

import grpc

from atelier.errors import InvalidArgument
from atelier.runtime.caller import current_credentials
from atelier.runtime.home import atelier_home


def credentials_path(home: Path | None = None) -> Path:
    """The credentials file: `$ATELIER_CREDENTIALS`, else `credentials` in the stack's home."""
    explicit = os.environ.get("ATELIER_CREDENTIALS", "").strip()
    return Path(explicit) if explicit else (home or atelier_home()) / "credentials"


def read_credentials(path: Path) -> dict[str, str]:
    """The stored credentials (`token`, `principal`), or {} when there is no file."""
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as error:
        raise InvalidArgument(f"cannot read the credentials file {path}: {error}") from error
    return {str(k): str(v) for k, v in data.items()} if isinstance(data, dict) else {}


def _check_replaceable(path: Path) -> None:
    """Refuse to replace or remove `path` unless it is missing or a credentials file: it is named by
    a variable, and a typo must not cost the user another file (or, as root, `/dev/null`)."""
    try:
        if not path.is_file():
            if path.exists():
                raise InvalidArgument(
                    f"{path} is not an Atelier credentials file (not a regular file); left alone",
                    metadata={"path": str(path)},
                )
            return
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = None
    if not (isinstance(data, dict) and "token" in data):
        raise InvalidArgument(
            f"{path} is not an Atelier credentials file (no JSON token); left alone", metadata={"path": str(path)}
        )


def write_credentials(path: Path, token: str, principal: str) -> None:
    """Store a token readable by its owner only (0600), replacing the file atomically (only a
    credentials file: anything else at `path` is left alone, with an error)."""
    _check_replaceable(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(path.name + ".tmp")
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        json.dump({"token": token, "principal": principal}, handle)
    os.chmod(temporary, 0o600)
    os.replace(temporary, path)


def remove_credentials(path: Path) -> bool:
    """Delete the credentials file at `path`; False when there was none. Anything but a credentials
    file is left alone, with an error."""
    _check_replaceable(path)
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True


def configured_token(home: Path | None = None) -> str:
    """This process's own token: `ATELIER_TOKEN`, else the credentials file's; '' when none."""
    token = os.environ.get("ATELIER_TOKEN", "").strip()
    where = "ATELIER_TOKEN"
    if not token:
        path = credentials_path(home)
        token, where = read_credentials(path).get("token", ""), str(path)
    if not all("!" <= character <= "~" for character in token):
        # It travels in a header: anything else would fail every call with a less helpful message.
        raise InvalidArgument(f"the token in {where} is not one: tokens are printable ASCII without spaces")
    return token


class _Details(NamedTuple):
    method: str
    timeout: float | None
    metadata: Any
    credentials: Any
    wait_for_ready: bool | None
    compression: Any


if TYPE_CHECKING:
    _UU = grpc.UnaryUnaryClientInterceptor[Any, Any]
    _US = grpc.UnaryStreamClientInterceptor[Any, Any]
    _SU = grpc.StreamUnaryClientInterceptor[Any, Any]
    _SS = grpc.StreamStreamClientInterceptor[Any, Any]
else:
    _UU, _US = grpc.UnaryUnaryClientInterceptor, grpc.UnaryStreamClientInterceptor
    _SU, _SS = grpc.StreamUnaryClientInterceptor, grpc.StreamStreamClientInterceptor


class AuthMetadata(_UU, _US, _SU, _SS):
    """Adds `authorization` to every call: the forwarded caller's, else this process's own token."""

    def __init__(self, token: Callable[[], str] = configured_token, forward: bool = True) -> None:
        self._token = token
        self._forward = forward
        self._own: str | None = None

    def _header(self) -> str:
        forwarded = current_credentials.get() if self._forward else None
        if forwarded:
            return forwarded
        if self._own is None:
            token = self._token()
            self._own = f"Bearer {token}" if token else ""
        return self._own

    def _details(self, details: Any) -> Any:
        header = self._header()
        if not header:
            return details
        metadata = [m for m in (details.metadata or ()) if m[0] != "authorization"]
        metadata.append(("authorization", header))
        return _Details(
            details.method,
            details.timeout,
            metadata,
            details.credentials,
            getattr(details, "wait_for_ready", None),
            getattr(details, "compression", None),
        )

    def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_unary_stream(self, continuation: Any, details: Any, request: Any) -> Any:
        return continuation(self._details(details), request)

    def intercept_stream_unary(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)

    def intercept_stream_stream(self, continuation: Any, details: Any, requests: Any) -> Any:
        return continuation(self._details(details), requests)
