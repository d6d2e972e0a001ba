"""The credentials of the call being served, for the calls a service makes on its caller's behalf.

The server's access check sets them (`atelier.runtime.auth`); a client channel inside a service reads
them to forward the caller's `authorization` header. A module of its own, so that a client process
(the CLI, the SDK) reads it without loading the access rules and the IAM messages.
"""

from __future__ import annotations

import contextvars

current_credentials: contextvars.ContextVar[str | None] = contextvars.ContextVar("atelier_credentials", default=None)
"""The caller's `authorization` header value, forwarded on calls made on its behalf."""
