"""HttpRule path templates (`/v1/{name=projects/*/jobs/*}:cancel`) as matchers.

The grammar is google/api/http.proto's: literal segments, `*` (one segment), `**` (the rest of the
path), variables `{field.path=pattern}` (`{field}` means `{field=*}`) and a final `:verb`.
A wildcard never spans a `:`, so `/v1/{name=projects/*/jobs/*}` and `.../jobs/*}:cancel` do not overlap.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from atelier.errors import InvalidArgument

_SEGMENT = "[^/:]+"
_REST = "[^:]+"
_VARIABLE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_.]*)(?:=([^}]*))?\}")


@dataclass(frozen=True)
class PathVariable:
    """One `{field=pattern}` of a template."""

    field_path: str
    """The request field it binds, dotted for nested messages (`tag.name`)."""
    pattern: str
    """The segment pattern it matches, e.g. `projects/*/jobs/*`."""

    @property
    def group(self) -> str:
        return self.field_path.replace(".", "__")

    def regex(self) -> str:
        return "/".join(_segment_regex(part) for part in self.pattern.split("/"))


@dataclass(frozen=True)
class PathTemplate:
    """A parsed template: its text, its variables and the regex that matches a request path."""

    text: str
    variables: tuple[PathVariable, ...]
    regex: re.Pattern[str]

    def match(self, path: str) -> dict[str, str] | None:
        """The value of each variable's field path for `path`, or None when it does not match."""
        found = self.regex.fullmatch(path)
        if found is None:
            return None
        return {v.field_path: found.group(v.group) for v in self.variables}

    def openapi_path(self) -> tuple[str, list[tuple[str, str, str]]]:
        """The OpenAPI path (one `{param}` per wildcard segment) and (param, field path, segment pattern)
        for each parameter."""
        parts: list[str] = []
        params: list[tuple[str, str, str]] = []
        position = 0
        for found in _VARIABLE.finditer(self.text):
            parts.append(self.text[position : found.start()])
            variable = _variable(found)
            pieces: list[str] = []
            previous = variable.field_path.rsplit(".", 1)[-1]
            for segment in variable.pattern.split("/"):
                if segment in ("*", "**"):
                    name = _unique(_singular(previous), {p[0] for p in params})
                    params.append((name, variable.field_path, segment))
                    pieces.append("{" + name + "}")
                else:
                    pieces.append(segment)
                    previous = segment
            parts.append("/".join(pieces))
            position = found.end()
        parts.append(self.text[position:])
        return "".join(parts), params


def parse_template(text: str) -> PathTemplate:
    """Parse an HttpRule path; a template outside the grammar is an `InvalidArgument` naming it."""
    if not text.startswith("/"):
        raise InvalidArgument(f"HTTP path template {text!r} must start with '/'")
    pieces: list[str] = []
    variables: list[PathVariable] = []
    position = 0
    for found in _VARIABLE.finditer(text):
        pieces.append(_literal_regex(text[position : found.start()]))
        variable = _variable(found)
        variables.append(variable)
        pieces.append(f"(?P<{variable.group}>{variable.regex()})")
        position = found.end()
    pieces.append(_literal_regex(text[position:]))
    if "{" in text[position:] or "}" in text[position:]:
        raise InvalidArgument(f"HTTP path template {text!r} has an unbalanced '{{' or '}}'")
    return PathTemplate(text=text, variables=tuple(variables), regex=re.compile("".join(pieces)))


def _variable(found: re.Match[str]) -> PathVariable:
    return PathVariable(field_path=found.group(1), pattern=found.group(2) or "*")


def _literal_regex(text: str) -> str:
    """Literal parts may still hold bare `*` / `**` segments (`/v1/*/things`)."""
    return "/".join(_segment_regex(part) if part in ("*", "**") else re.escape(part) for part in text.split("/"))


def _segment_regex(segment: str) -> str:
    if segment == "**":
        return _REST
    if segment == "*":
        return _SEGMENT
    return re.escape(segment)


def _singular(word: str) -> str:
    if word.endswith("ses"):
        return word[:-2]
    return word[:-1] if word.endswith("s") and len(word) > 1 else word


def _unique(name: str, taken: set[str]) -> str:
    candidate, counter = name, 2
    while candidate in taken:
        candidate, counter = f"{name}{counter}", counter + 1
    return candidate
