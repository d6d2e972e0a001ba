"""Checks of request fields that several services share, with errors that name the field, the value
and what is allowed."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from atelier.errors import InvalidArgument

if TYPE_CHECKING:
    from google.protobuf.internal.enum_type_wrapper import _EnumTypeWrapper


def check_enum(field: str, value: int, enum: _EnumTypeWrapper[Any]) -> None:
    """INVALID_ARGUMENT unless `value` is one of `enum`'s values (proto3 lets any number through an
    enum field; `*_UNSPECIFIED`, where a field may be left unset, is one of them)."""
    if value not in enum.values():
        allowed = ", ".join(name for name in enum.keys() if not name.endswith("_UNSPECIFIED"))  # noqa: SIM118
        raise InvalidArgument(f"{field} is {value}; allowed: {allowed}", metadata={"field": field, "value": str(value)})


def check_relative_path(field: str, path: str, max_length: int = 1000) -> None:
    """INVALID_ARGUMENT unless `path` stays inside the directory it is relative to: not absolute, no `..`
    or empty segments, no NUL, at most `max_length` characters."""
    parts = path.split("/")
    if path.startswith("/") or ".." in parts or "" in parts or "\x00" in path or len(path) > max_length:
        raise InvalidArgument(
            f"{field} {path[:200]!r} must be a relative path of 1-{max_length} characters without '..' or empty "
            "segments, like data/digits",
            metadata={"field": field},
        )
