"""The proto comments of Atelier's APIs, by full name, for the OpenAPI document.

The generated `_pb2` modules carry no source info, so `make proto` also writes Atelier's protos as
one descriptor set with it (`atelier/proto_comments.binpb`). A location's path walks the
`FileDescriptorProto` by field number and index: `[4, i]` is the file's i-th message, `[4, i, 2, j]`
its j-th field, `[6, s, 2, m]` the s-th service's m-th method, and so on.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from functools import cache
from importlib import resources

from google.protobuf import descriptor_pb2

RESOURCE = "proto_comments.binpb"

# Field numbers in descriptor.proto.
_FILE_MESSAGES, _FILE_ENUMS, _FILE_SERVICES = 4, 5, 6
_MESSAGE_FIELDS, _MESSAGE_NESTED, _MESSAGE_ENUMS = 2, 3, 4
_ENUM_VALUES = 2
_SERVICE_METHODS = 2

_Path = tuple[int, ...]


@cache
def proto_comments() -> Mapping[str, str]:
    """Full name (`atelier.data.v1.Dataset`, `atelier.data.v1.Dataset.name`, a method's
    `atelier.data.v1.DataService.GetDataset`) -> its leading comment, cleaned; empty without the file."""
    source = resources.files("atelier").joinpath(RESOURCE)
    if not source.is_file():
        return {}
    files = descriptor_pb2.FileDescriptorSet.FromString(source.read_bytes())
    return comments_of(files)


def comments_of(files: descriptor_pb2.FileDescriptorSet) -> dict[str, str]:
    """Every commented element of `files`, by full name."""
    found: dict[str, str] = {}
    for file in files.file:
        by_path = {tuple(location.path): location.leading_comments for location in file.source_code_info.location}
        for name, path in _elements(file):
            text = _clean(by_path.get(path, ""))
            if text:
                found[name] = text
    return found


def _elements(file: descriptor_pb2.FileDescriptorProto) -> Iterator[tuple[str, _Path]]:
    prefix = f"{file.package}." if file.package else ""
    for i, message in enumerate(file.message_type):
        yield from _message(message, prefix, (_FILE_MESSAGES, i))
    for i, enum in enumerate(file.enum_type):
        yield from _enum(enum, prefix, (_FILE_ENUMS, i))
    for i, service in enumerate(file.service):
        name = prefix + service.name
        yield name, (_FILE_SERVICES, i)
        for j, method in enumerate(service.method):
            yield f"{name}.{method.name}", (_FILE_SERVICES, i, _SERVICE_METHODS, j)


def _message(message: descriptor_pb2.DescriptorProto, prefix: str, path: _Path) -> Iterator[tuple[str, _Path]]:
    name = prefix + message.name
    yield name, path
    for j, field in enumerate(message.field):
        yield f"{name}.{field.name}", (*path, _MESSAGE_FIELDS, j)
    for j, nested in enumerate(message.nested_type):
        yield from _message(nested, f"{name}.", (*path, _MESSAGE_NESTED, j))
    for j, enum in enumerate(message.enum_type):
        yield from _enum(enum, f"{name}.", (*path, _MESSAGE_ENUMS, j))


def _enum(enum: descriptor_pb2.EnumDescriptorProto, prefix: str, path: _Path) -> Iterator[tuple[str, _Path]]:
    name = prefix + enum.name
    yield name, path
    for j, value in enumerate(enum.value):
        yield f"{name}.{value.name}", (*path, _ENUM_VALUES, j)


def _clean(comment: str) -> str:
    """A comment's lines without the one space after `//`, and without buf-lint directives."""
    lines = [line[1:] if line.startswith(" ") else line for line in comment.splitlines()]
    kept = [line.rstrip() for line in lines if not line.strip().startswith("buf:lint:")]
    return "\n".join(kept).strip()
