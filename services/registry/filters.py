"""Filter expressions for the model registry: a small subset of AIP-160 (https://google.aip.dev/160).

`parse_filter` turns text such as `metrics.val_accuracy > 0.9 AND NOT state = FAILED` into a tree of
frozen dataclasses (`search` turns it into SQL; `conditions` evaluates it against field values, for
promotion gates). Pure Python: no gRPC or database imports.
"""

from __future__ import annotations

import dataclasses
import math
import re
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from numbers import Real

from atelier.errors import InvalidArgument

MAX_LENGTH = 10_000
MAX_DEPTH = 50
OPERATORS = ("=", "!=", "<", "<=", ">", ">=", ":")
KEYWORDS = frozenset({"AND", "OR", "NOT"})

Scalar = int | float | str | bool
Lookup = Callable[["Field"], object]

_SEGMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_ESCAPES = {"n": "\n", "t": "\t", "r": "\r", "0": "\0"}
_RENDER_ESCAPES = {"\\": "\\\\", '"': '\\"', "\n": "\\n", "\t": "\\t", "\r": "\\r", "\0": "\\0"}


@dataclass(frozen=True, slots=True)
class Field:
    """A dotted field path, e.g. `metrics.val_accuracy` is `Field(("metrics", "val_accuracy"))`."""

    path: tuple[str, ...]

    def __str__(self) -> str:
        return ".".join(s if _SEGMENT.fullmatch(s) and s.upper() not in KEYWORDS else _backticked(s) for s in self.path)


@dataclass(frozen=True, slots=True)
class Literal:
    """A constant: number, string (bare enum-like words too) or boolean."""

    value: Scalar

    def __str__(self) -> str:
        return render_value(self.value)


@dataclass(frozen=True, slots=True)
class Present:
    """The `*` of `field:*` ("the field is present")."""

    def __str__(self) -> str:
        return "*"


@dataclass(frozen=True, slots=True)
class Comparison:
    """`field op value`; `position` (the character offset in the text) is left out of equality."""

    field: Field
    op: str
    value: Literal | Field | Present
    position: int = dataclasses.field(default=0, compare=False)

    def __str__(self) -> str:
        value = self.value  # a one-segment field as a value is backticked (a bare word would be a string)
        value_text = _backticked(value.path[0]) if isinstance(value, Field) and len(value.path) == 1 else str(value)
        return f"{self.field}:{value_text}" if self.op == ":" else f"{self.field} {self.op} {value_text}"


@dataclass(frozen=True, slots=True)
class And:
    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return " AND ".join(_child(item, self) for item in self.items)


@dataclass(frozen=True, slots=True)
class Or:
    items: tuple[Expr, ...]

    def __str__(self) -> str:
        return " OR ".join(_child(item, self) for item in self.items)


@dataclass(frozen=True, slots=True)
class Not:
    item: Expr

    def __str__(self) -> str:
        return f"NOT {_child(self.item, self)}"


Expr = Comparison | And | Or | Not


def _backticked(segment: str) -> str:
    return "`" + segment.replace("\\", "\\\\").replace("`", "\\`") + "`"


def _child(item: Expr, parent: Expr) -> str:
    nested = isinstance(item, Or) or (isinstance(item, And) and not isinstance(parent, Or))
    return f"({item})" if nested else str(item)


def render_value(value: object) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return '"' + "".join(_RENDER_ESCAPES.get(c, c) for c in value) + '"'
    return str(value) if isinstance(value, Real) else repr(value)


# --- lexer -------------------------------------------------------------------------------------------

_SEG = rf"(?:{_SEGMENT.pattern}|`(?:[^`\\]|\\.)*`)"
_TOKEN = re.compile(
    rf"""(?P<field>{_SEG}(?:\.{_SEG})*)
    |(?P<string>"(?:[^"\\]|\\.)*"|'(?:[^'\\]|\\.)*')
    |(?P<number>[+-]?(?:\d+\.?\d*|\.\d+)(?:[eE][+-]?\d+)?)
    |(?P<op><=|>=|!=|=|<|>|:)
    |(?P<punct>[()*-])""",
    re.VERBOSE | re.DOTALL,
)


@dataclass(frozen=True, slots=True)
class _Token:
    kind: str  # field, number, string, op, AND, OR, NOT, (, ), -, *, end
    text: str
    pos: int
    path: tuple[str, ...] = ()
    literal: Scalar = ""


def _error(text: str, pos: int, token: str, problem: str) -> InvalidArgument:
    shown = repr(token) if token else "end of filter"
    quoted = text if len(text) <= 200 else text[:200] + "..."
    return InvalidArgument(
        f'invalid filter at position {pos} ({shown}): {problem} in "{quoted}"',
        metadata={"field": "filter", "position": str(pos), "token": token},
    )


def _unescape(body: str) -> str:
    return re.sub(r"\\(.)", lambda m: _ESCAPES.get(m[1], m[1]), body, flags=re.DOTALL)


def _tokenize(text: str) -> list[_Token]:
    tokens: list[_Token] = []
    pos = 0
    while pos < len(text):
        if text[pos].isspace():
            pos += 1
            continue
        token = _next_token(text, pos)
        tokens.append(token)
        pos += len(token.text)
    return [*tokens, _Token("end", "", len(text))]


def _next_token(text: str, pos: int) -> _Token:
    match = _TOKEN.match(text, pos)
    if match is None:
        if text[pos] in "\"'`":
            what = "name" if text[pos] == "`" else "string"
            raise _error(text, pos, text[pos : pos + 20], f"unterminated {what}: expected a closing {text[pos]}")
        raise _error(text, pos, text[pos], "unexpected character")
    raw, end, kind = match.group(), match.end(), match.lastgroup or ""
    if kind == "field":
        return _field_token(text, raw, pos, end)
    if kind == "string":
        return _Token("string", raw, pos, literal=_unescape(raw[1:-1]))
    if kind == "number":
        return _number_token(text, raw, pos, end)
    return _Token("op" if kind == "op" else raw, raw, pos)


def _field_token(text: str, raw: str, pos: int, end: int) -> _Token:
    if text.startswith(".", end):
        raise _error(text, end + 1, text[end + 1 : end + 2], "expected a name after '.'")
    segments = tuple(_unescape(s[1:-1]) if s[0] == "`" else s for s in re.findall(_SEG, raw))
    if "" in segments:
        raise _error(text, pos, raw, "expected a name inside the backticks")
    return _Token(raw.upper() if raw.upper() in KEYWORDS else "field", raw, pos, path=segments)


def _number_token(text: str, raw: str, pos: int, end: int) -> _Token:
    if end < len(text) and (text[end].isalnum() or text[end] in "._`"):
        raise _error(text, pos, re.split(r"[^\w.+-]", text[pos:], maxsplit=1)[0], "invalid number")
    try:
        value: int | float = int(raw) if re.fullmatch(r"[+-]?\d+", raw) else float(raw)
    except ValueError:  # more digits than int() accepts
        value = math.inf
    if isinstance(value, float) and not math.isfinite(value):
        raise _error(text, pos, raw, "number out of range")
    return _Token("number", raw, pos, literal=value)


# --- parser ------------------------------------------------------------------------------------------


class _Parser:
    def __init__(self, text: str) -> None:
        self.text = text
        self.tokens = _tokenize(text)
        self.index = 0
        self.depth = 0

    def peek(self) -> _Token:
        return self.tokens[self.index]

    def advance(self) -> _Token:
        token = self.tokens[self.index]
        self.index = min(self.index + 1, len(self.tokens) - 1)
        return token

    def fail(self, token: _Token, problem: str) -> InvalidArgument:
        return _error(self.text, token.pos, token.text, problem)

    @contextmanager
    def nested(self, token: _Token) -> Iterator[None]:
        self.depth += 1
        if self.depth > MAX_DEPTH:
            raise self.fail(token, f"filter nests deeper than {MAX_DEPTH} levels")
        yield
        self.depth -= 1

    def parse(self) -> Expr:
        expr = self.or_expr(None)
        if self.peek().kind != "end":
            raise self.fail(self.peek(), "expected AND, OR or the end of the filter")
        return expr

    def or_expr(self, after: _Token | None) -> Expr:
        items = [self.and_expr(after)]
        while self.peek().kind == "OR":
            items.append(self.and_expr(self.advance()))
        return items[0] if len(items) == 1 else Or(tuple(items))

    def and_expr(self, after: _Token | None) -> Expr:
        items = [self.unary(after)]
        while self.peek().kind == "AND":
            items.append(self.unary(self.advance()))
        return items[0] if len(items) == 1 else And(tuple(items))

    def unary(self, after: _Token | None) -> Expr:
        token = self.peek()
        if token.kind == "NOT":
            with self.nested(self.advance()):
                return Not(self.unary(token))
        if token.kind == "-":
            following = self.tokens[self.index + 1]
            if following.kind not in ("field", "(") or following.pos != token.pos + 1:
                raise self.fail(following, "expected a comparison or '(' directly after '-'")
            with self.nested(self.advance()):
                return Not(self.primary(token))
        return self.primary(after)

    def primary(self, after: _Token | None) -> Expr:
        token = self.peek()
        if token.kind == "field":
            return self.comparison()
        if token.kind != "(":
            where = f" after {after.text!r}" if after else ""
            raise self.fail(token, f"expected a comparison or '('{where}")
        self.advance()
        if self.peek().kind == ")":
            raise self.fail(self.peek(), "empty parentheses")
        with self.nested(token):
            expr = self.or_expr(token)
        if self.peek().kind != ")":
            raise self.fail(self.peek(), f"expected AND, OR or ')' to close the '(' at position {token.pos}")
        self.advance()
        return expr

    def comparison(self) -> Comparison:
        field = self.advance()
        op = self.peek()
        if op.kind != "op":
            raise self.fail(op, f"expected an operator ({' '.join(OPERATORS)}) after {field.text!r}")
        self.advance()
        return Comparison(Field(field.path), op.text, self.value(op), field.pos)

    def value(self, op: _Token) -> Literal | Field | Present:
        token = self.advance()
        if token.kind == "*" and op.text == ":":
            return Present()
        if token.kind in ("number", "string"):
            return Literal(token.literal)
        if token.kind == "field":
            if len(token.path) > 1 or token.text.startswith("`"):
                return Field(token.path)
            lowered = token.text.lower()
            return Literal(lowered == "true") if lowered in ("true", "false") else Literal(token.text)
        problem = "'*' is allowed only after ':'" if token.kind == "*" else f"expected a value after {op.text!r}"
        raise self.fail(token, problem)


def parse_filter(text: str) -> Expr | None:
    """Parse a filter; None for an empty one. Malformed text raises InvalidArgument naming the position."""
    if len(text) > MAX_LENGTH:
        problem = f"the filter is {len(text)} characters long; at most {MAX_LENGTH} are allowed"
        raise _error(text, MAX_LENGTH, text[MAX_LENGTH], problem)
    return _Parser(text).parse() if text.strip() else None
