"""HTTP request -> protobuf request, per the HttpRule spec (google/api/http.proto).

Path variables set their (possibly nested) fields; the body fills the whole request (`body: "*"`) or
one field; every other field may come from the query string, dotted for nested messages
(`filter.state=RUNNING`), repeated as repeated parameters, enums by name, well-known types
(Timestamp, Duration, FieldMask, wrappers) from their JSON strings. Values go through `json_format`,
so the canonical JSON mapping decides what a value may be.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from typing import Any

from google.protobuf import descriptor, json_format
from google.protobuf.message import Message

from atelier.errors import InvalidArgument
from gateway.descriptors import HttpBinding

FieldDescriptor = descriptor.FieldDescriptor

SCALAR_WELL_KNOWN = frozenset(
    {
        "google.protobuf.Timestamp",
        "google.protobuf.Duration",
        "google.protobuf.FieldMask",
        "google.protobuf.DoubleValue",
        "google.protobuf.FloatValue",
        "google.protobuf.Int64Value",
        "google.protobuf.UInt64Value",
        "google.protobuf.Int32Value",
        "google.protobuf.UInt32Value",
        "google.protobuf.BoolValue",
        "google.protobuf.StringValue",
        "google.protobuf.BytesValue",
    }
)
"""Message types whose JSON form is a single string or number, so a query parameter can carry them."""


def build_request(
    binding: HttpBinding, path_values: Mapping[str, str], query: Iterable[tuple[str, str]], body: bytes
) -> Message:
    """The gRPC request for one HTTP request; `InvalidArgument` naming the field when a part is malformed."""
    request = binding.request_class()()
    if binding.body:
        _parse_body(binding, request, body)
    query_items = list(query)
    if query_items and binding.body == "*":
        names = ", ".join(sorted({key for key, _ in query_items}))
        raise InvalidArgument(
            f"{binding.http_method} {binding.template.text} takes its fields in the JSON body; "
            f"move the query parameters ({names}) into the body"
        )
    if query_items:
        _parse(_query_dict(request.DESCRIPTOR, query_items, binding), request, "query parameters")
    for field_path, value in path_values.items():
        set_path_field(request, field_path, value)
    return request


def _parse_body(binding: HttpBinding, request: Message, body: bytes) -> None:
    if not body.strip():
        return
    try:
        content = json.loads(body)
    except ValueError as error:
        raise InvalidArgument(f"the request body is not valid JSON: {error}") from None
    except RecursionError:
        raise InvalidArgument("the request body nests too deeply to be a request") from None
    if binding.body == "*":
        _parse(content, request, "the request body")
        return
    field = request.DESCRIPTOR.fields_by_name[binding.body]
    if field.type == FieldDescriptor.TYPE_MESSAGE and not _is_repeated(field):
        _parse(content, getattr(request, binding.body), f"the request body ({field.json_name})")
    else:
        _parse({field.json_name: content}, request, "the request body")


def _parse(content: Any, message: Message, where: str) -> None:
    if not isinstance(content, dict) and message.DESCRIPTOR.full_name not in SCALAR_WELL_KNOWN:
        raise InvalidArgument(
            f"{where} must be a JSON object ({message.DESCRIPTOR.full_name}), not {type(content).__name__}"
        )
    try:
        json_format.ParseDict(content, message)
    except json_format.ParseError as error:
        raise InvalidArgument(f"{where}: {error}") from None


def _query_dict(message: Any, items: list[tuple[str, str]], binding: HttpBinding) -> dict[str, Any]:
    """Nest `a.b.c=value` parameters into the JSON object `json_format` reads."""
    content: dict[str, Any] = {}
    bound = {v.field_path for v in binding.template.variables} | ({binding.body} if binding.body else set())
    for key, value in items:
        fields = _resolve(message, key)
        if fields[0].name in bound or ".".join(f.name for f in fields) in bound:
            raise InvalidArgument(f"query parameter {key!r} sets a field the path or body already binds")
        node = content
        for field in fields[:-1]:
            node = node.setdefault(field.json_name, {})
        leaf = fields[-1]
        value = _query_value(leaf, value)
        if _is_repeated(leaf):
            node.setdefault(leaf.json_name, []).append(value)
        elif leaf.json_name in node:
            raise InvalidArgument(f"query parameter {key!r} is given more than once; it takes one value")
        else:
            node[leaf.json_name] = value
    return content


def _query_value(field: FieldDescriptor, value: str) -> Any:
    """A query string's text as the JSON value `json_format` expects (it takes only JSON booleans)."""
    if field.type == FieldDescriptor.TYPE_BOOL and value in ("true", "false"):
        return value == "true"
    return value


def _resolve(message: descriptor.Descriptor, key: str) -> list[FieldDescriptor]:
    """The fields a dotted query parameter walks through; only singular messages may be stepped into."""
    fields: list[FieldDescriptor] = []
    current = message
    parts = key.split(".")
    for position, part in enumerate(parts):
        field = current.fields_by_name.get(part) or _by_json_name(current, part)
        if field is None:
            allowed = ", ".join(sorted(query_fields(message)))
            raise InvalidArgument(f"unknown query parameter {key!r}; allowed: {allowed or 'none'}")
        fields.append(field)
        last = position == len(parts) - 1
        if field.message_type is not None and field.message_type.full_name not in SCALAR_WELL_KNOWN:
            if last or _is_repeated(field):
                raise InvalidArgument(
                    f"query parameter {key!r} names a message field; give its scalar fields (`{key}.<field>`) "
                    "or send the request as a JSON body"
                )
            current = field.message_type
        elif not last:
            raise InvalidArgument(f"query parameter {key!r}: {part!r} is not a message, so it has no fields")
    return fields


def _by_json_name(message: descriptor.Descriptor, name: str) -> FieldDescriptor | None:
    return next((f for f in message.fields if f.json_name == name), None)


def query_fields(message: descriptor.Descriptor, prefix: str = "", depth: int = 0) -> list[str]:
    """The dotted (lowerCamelCase) names a query string may set, for errors and OpenAPI."""
    names: list[str] = []
    for field in message.fields:
        name = prefix + field.json_name
        nested = field.message_type
        if nested is not None and nested.full_name not in SCALAR_WELL_KNOWN:
            if not _is_repeated(field) and depth < 3 and not nested.GetOptions().map_entry:
                names.extend(query_fields(nested, name + ".", depth + 1))
            continue
        names.append(name)
    return names


def set_path_field(request: Message, field_path: str, value: str) -> None:
    target = request
    parts = field_path.split(".")
    for part in parts[:-1]:
        target = getattr(target, part)
    setattr(target, parts[-1], value)


def _is_repeated(field: Any) -> bool:
    return bool(field.is_repeated)
