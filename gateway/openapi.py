"""OpenAPI 3.1 for the gateway, generated from the same bindings as the routes.

Schemas follow protobuf's canonical JSON mapping (int64 as strings, enums as names, Timestamps as
RFC 3339 strings). Descriptions are the protos' comments (`gateway.comments`: the generated
descriptors carry none, `make proto` keeps them in a descriptor set of their own): a service's
comment describes its tag, a method's its operation, a message's and a field's their schema.
"""

from __future__ import annotations

from typing import Any

from google.protobuf import descriptor

from gateway.comments import proto_comments
from gateway.descriptors import HttpBinding, Streaming
from gateway.downloads import MULTIPART_BYTERANGES, OCTET_STREAM, is_download
from gateway.transcode import SCALAR_WELL_KNOWN, query_fields
from gateway.uploads import PROTOBUF

FieldDescriptor = descriptor.FieldDescriptor
_REF = "#/components/schemas/"
_ID = r"^[a-z0-9][a-z0-9._-]{0,62}$"
_REF_ID = r"^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$"
"""What a resource id (`atelier.names`), or a version's ref (a number, tag or digest), may be: the
services answer 400 for any other segment."""
_PATH = r"^[^:]+$"

# 64-bit integers are decimal strings in the JSON mapping (18 digits keep them in range).
_INT64 = {"type": "string", "format": "int64", "pattern": r"^-?[0-9]{1,18}$"}
_UINT64 = {"type": "string", "format": "uint64", "pattern": r"^[0-9]{1,18}$"}
_INT32 = {"type": "integer", "format": "int32", "minimum": -(2**31), "maximum": 2**31 - 1}
_UINT32 = {"type": "integer", "format": "int64", "minimum": 0, "maximum": 2**32 - 1}
_SCALARS: dict[int, dict[str, Any]] = {
    FieldDescriptor.TYPE_DOUBLE: {"type": "number", "format": "double"},
    FieldDescriptor.TYPE_FLOAT: {"type": "number", "format": "float"},
    FieldDescriptor.TYPE_INT64: _INT64,
    FieldDescriptor.TYPE_UINT64: _UINT64,
    FieldDescriptor.TYPE_SINT64: _INT64,
    FieldDescriptor.TYPE_FIXED64: _UINT64,
    FieldDescriptor.TYPE_SFIXED64: _INT64,
    FieldDescriptor.TYPE_INT32: _INT32,
    FieldDescriptor.TYPE_SINT32: _INT32,
    FieldDescriptor.TYPE_SFIXED32: _INT32,
    FieldDescriptor.TYPE_UINT32: _UINT32,
    FieldDescriptor.TYPE_FIXED32: _UINT32,
    FieldDescriptor.TYPE_BOOL: {"type": "boolean"},
    FieldDescriptor.TYPE_STRING: {"type": "string"},
    FieldDescriptor.TYPE_BYTES: {"type": "string", "format": "byte"},
}
_WELL_KNOWN: dict[str, dict[str, Any]] = {
    "google.protobuf.Timestamp": {"type": "string", "format": "date-time"},
    "google.protobuf.Duration": {"type": "string", "pattern": r"^-?\d+(\.\d+)?s$"},
    "google.protobuf.FieldMask": {"type": "string"},
    "google.protobuf.Struct": {"type": "object", "additionalProperties": True},
    "google.protobuf.Value": {},
    "google.protobuf.ListValue": {"type": "array", "items": {}},
    "google.protobuf.Empty": {"type": "object"},
    "google.protobuf.Any": {
        "type": "object",
        "properties": {"@type": {"type": "string"}},
        "additionalProperties": True,
    },
    "google.protobuf.DoubleValue": {"type": "number"},
    "google.protobuf.FloatValue": {"type": "number"},
    "google.protobuf.Int64Value": _INT64,
    "google.protobuf.UInt64Value": _UINT64,
    "google.protobuf.Int32Value": _INT32,
    "google.protobuf.UInt32Value": _UINT32,
    "google.protobuf.BoolValue": {"type": "boolean"},
    "google.protobuf.StringValue": {"type": "string"},
    "google.protobuf.BytesValue": {"type": "string", "format": "byte"},
}
ERROR_SCHEMA: dict[str, Any] = {
    "type": "object",
    "required": ["error"],
    "properties": {
        "error": {
            "type": "object",
            "required": ["code", "message", "status"],
            "properties": {
                "code": {"type": "integer", "description": "The HTTP status."},
                "message": {"type": "string"},
                "status": {"type": "string", "description": "The gRPC status code's name, e.g. NOT_FOUND."},
                "details": {"type": "array", "items": {"$ref": _REF + "google.protobuf.Any"}},
            },
        }
    },
}


class _Schemas:
    """components/schemas, filled with each message type (and the ones it refers to) once."""

    def __init__(self) -> None:
        self.schemas: dict[str, Any] = {"google.protobuf.Any": _WELL_KNOWN["google.protobuf.Any"]}

    def ref(self, message: descriptor.Descriptor) -> dict[str, Any]:
        if message.full_name in _WELL_KNOWN:
            return dict(_WELL_KNOWN[message.full_name])
        if message.full_name not in self.schemas:
            self.schemas[message.full_name] = {}
            self.schemas[message.full_name] = self._object(message)
        return {"$ref": _REF + message.full_name}

    def field(self, field: FieldDescriptor) -> dict[str, Any]:
        message = field.message_type
        if message is not None and message.GetOptions().map_entry:
            return {"type": "object", "additionalProperties": self.field(message.fields_by_name["value"])}
        if message is not None:
            single = self.ref(message)
        elif field.enum_type is not None:
            single = {"type": "string", "enum": [v.name for v in field.enum_type.values]}
        else:
            single = dict(_SCALARS[field.type])
        if field.is_repeated:
            return {"type": "array", "items": single}
        return single

    def _object(self, message: descriptor.Descriptor) -> dict[str, Any]:
        comments = proto_comments()
        properties = {f.json_name: _described(self.field(f), comments.get(f.full_name)) for f in message.fields}
        # The JSON mapping rejects fields a message does not have (`json_format` answers 400).
        schema = {"type": "object", "title": message.name, "properties": properties, "additionalProperties": False}
        return _described(schema, comments.get(message.full_name))


def _described(schema: dict[str, Any], comment: str | None) -> dict[str, Any]:
    """`schema` with `comment` as its description (OpenAPI 3.1 allows one beside a `$ref`)."""
    return {**schema, "description": comment} if comment else schema


def openapi_document(bindings: list[HttpBinding], title: str = "Atelier", version: str = "v1") -> dict[str, Any]:
    """The OpenAPI 3.1 document of every binding."""
    schemas = _Schemas()
    paths: dict[str, dict[str, Any]] = {}
    for binding in bindings:
        path, operation = _operation(binding, schemas)
        paths.setdefault(path, {})[binding.http_method.lower()] = operation
    components = {"schemas": {**schemas.schemas, "Error": ERROR_SCHEMA}}
    services = sorted({binding.method.containing_service.full_name for binding in bindings})
    comments = proto_comments()
    return {
        "openapi": "3.1.0",
        "info": {"title": title, "version": version, "description": "REST transcoding of Atelier's gRPC APIs."},
        "tags": [_described({"name": service}, comments.get(service)) for service in services],
        "paths": paths,
        "components": components,
    }


def _operation(binding: HttpBinding, schemas: _Schemas) -> tuple[str, dict[str, Any]]:
    path, path_params = binding.template.openapi_path()
    parameters: list[dict[str, Any]] = [
        {
            "name": name,
            "in": "path",
            "required": True,
            "description": f"A segment of `{field_path}` ({'the rest of the path' if seg == '**' else 'one segment'})",
            "schema": {"type": "string", "pattern": _PATH if seg == "**" else _REF_ID if name == "version" else _ID},
        }
        for name, field_path, seg in path_params
    ]
    request = binding.method.input_type
    if binding.body != "*":
        bound = {v.field_path for v in binding.template.variables} | {binding.body}
        for name in query_fields(request):
            if not _bound(request, name, bound):
                schema, comment = _query_schema(request, name, schemas)
                parameters.append(
                    _described({"name": name, "in": "query", "required": False, "schema": schema}, comment)
                )
    operation: dict[str, Any] = {
        "operationId": binding.operation_id,
        "summary": binding.method.name,
        "description": _method_comment(binding) + f"{binding.rpc_path} ({binding.method.input_type.full_name} -> "
        f"{binding.method.output_type.full_name}).",
        "tags": [binding.method.containing_service.full_name],
        "parameters": parameters,
        "responses": {
            "200": _success(binding, schemas),
            "default": {
                "description": "An AIP-193 error.",
                "content": {"application/json": {"schema": {"$ref": _REF + "Error"}}},
            },
        },
    }
    if binding.body:
        body_schema = (
            schemas.ref(request) if binding.body == "*" else schemas.field(request.fields_by_name[binding.body])
        )
        content: dict[str, Any] = {"application/json": {"schema": body_schema}}
        if binding.streaming is Streaming.CLIENT:
            content = {
                "application/x-ndjson": {"schema": body_schema},
                **content,
                PROTOBUF: {"schema": {"type": "string", "format": "binary"}},
            }
            operation["description"] += (
                " A client stream: the body is request messages, one JSON object a line (application/x-ndjson or "
                "application/json), or binary messages each preceded by its length as a varint "
                "(application/x-protobuf)."
            )
        operation["requestBody"] = {"required": False, "content": content}
    if is_download(binding):
        operation["parameters"].append(
            {
                "name": "Range",
                "in": "header",
                "required": False,
                "description": (
                    "`bytes=a-b`, `bytes=a-` or `bytes=-n`: that part of the file as raw bytes (206); several, "
                    "comma-separated (at most 16), as multipart/byteranges (206)."
                ),
                "schema": {"type": "string"},
            }
        )
        operation["parameters"].append(
            {
                "name": "alt",
                "in": "query",
                "required": False,
                "description": "`media`: the file's raw bytes rather than a stream of JSON messages.",
                "schema": {"type": "string", "enum": ["media"]},
            }
        )
        raw = {OCTET_STREAM: {"schema": {"type": "string", "format": "binary"}}}
        operation["responses"]["200"]["content"].update(raw)
        parts = {MULTIPART_BYTERANGES: {"schema": {"type": "string", "format": "binary"}}}
        operation["responses"]["206"] = {
            "description": "The part of the file the Range asks for; several parts as multipart/byteranges.",
            "content": {**raw, **parts},
        }
        operation["responses"]["416"] = {
            "description": "A Range no part of which is in the file (`Content-Range: bytes */<size>`).",
            "content": {"application/json": {"schema": {"$ref": _REF + "Error"}}},
        }
        operation["description"] += (
            " Raw bytes (application/octet-stream) with `Accept: application/octet-stream`, `alt=media` or a "
            "`Range` header."
        )
    return path, operation


def _success(binding: HttpBinding, schemas: _Schemas) -> dict[str, Any]:
    output = binding.method.output_type
    schema = (
        schemas.field(output.fields_by_name[binding.response_body]) if binding.response_body else schemas.ref(output)
    )
    if binding.streaming is Streaming.SERVER:
        item = {"type": "object", "properties": {"result": schema, "error": ERROR_SCHEMA["properties"]["error"]}}
        return {
            "description": "A stream of messages: one JSON object a line, or Server-Sent Events.",
            "content": {"application/x-ndjson": {"schema": item}, "text/event-stream": {"schema": {"type": "string"}}},
        }
    return {"description": output.full_name, "content": {"application/json": {"schema": schema}}}


def _bound(message: descriptor.Descriptor, name: str, bound: set[str]) -> bool:
    """Whether a dotted json name lies under a field the path or the body binds."""
    proto_path: list[str] = []
    current: descriptor.Descriptor | None = message
    for part in name.split("."):
        field = next(f for f in current.fields if f.json_name == part) if current is not None else None
        if field is None:
            return False
        proto_path.append(field.name)
        if ".".join(proto_path) in bound:
            return True
        current = field.message_type
    return False


def _method_comment(binding: HttpBinding) -> str:
    comment = proto_comments().get(binding.method.full_name)
    return f"{comment}\n\n" if comment else ""


def _query_schema(message: descriptor.Descriptor, name: str, schemas: _Schemas) -> tuple[dict[str, Any], str | None]:
    """The schema of the query parameter `name` (a dotted json name) and its field's comment."""
    current = message
    field: FieldDescriptor | None = None
    for part in name.split("."):
        field = next(f for f in current.fields if f.json_name == part)
        if field.message_type is not None and field.message_type.full_name not in SCALAR_WELL_KNOWN:
            current = field.message_type
    assert field is not None
    return schemas.field(field), proto_comments().get(field.full_name)
