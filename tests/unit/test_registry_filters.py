from __future__ import annotations

import random
from collections.abc import Callable

import pytest

from atelier.errors import InvalidArgument
from services.registry.conditions import comparisons, evaluate, failed_conditions
from services.registry.filters import (
    MAX_DEPTH,
    MAX_LENGTH,
    And,
    Comparison,
    Expr,
    Field,
    Literal,
    Not,
    Or,
    Present,
    parse_filter,
)


def cmp(field: str, op: str, value: Literal | Field | Present | int | float | str | bool) -> Comparison:
    """A comparison on a dotted field; plain Python values become Literals."""
    if not isinstance(value, Literal | Field | Present):
        value = Literal(value)
    return Comparison(Field(tuple(field.split("."))), op, value)


A, B, C = cmp("a", "=", 1), cmp("b", "=", 2), cmp("c", "=", 3)


def lookup(values: dict[str, object]) -> Callable[[Field], object]:
    return lambda field: values[".".join(field.path)]


@pytest.mark.parametrize("text", ["", "   ", "\n\t"])
def test_empty_filter_is_none(text: str) -> None:
    assert parse_filter(text) is None
    assert comparisons(None) == []
    assert evaluate(None, lookup({})) is True
    assert failed_conditions(None, lookup({})) == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (
            'metrics.val_accuracy > 0.9 and params.lr < 0.01 and dataset = "digits@v2"',
            And((cmp("metrics.val_accuracy", ">", 0.9), cmp("params.lr", "<", 0.01), cmp("dataset", "=", "digits@v2"))),
        ),
        (
            "(tags.team = \"vision\" OR tags.team = 'nlp') AND NOT state = FAILED",
            And(
                (Or((cmp("tags.team", "=", "vision"), cmp("tags.team", "=", "nlp"))), Not(cmp("state", "=", "FAILED")))
            ),
        ),
        (
            "metrics.val_accuracy >= current.metrics.val_accuracy",
            cmp("metrics.val_accuracy", ">=", Field(("current", "metrics", "val_accuracy"))),
        ),
        ('create_time > "2026-01-01T00:00:00Z"', cmp("create_time", ">", "2026-01-01T00:00:00Z")),
        ("metrics.`val/acc` > 0.5", Comparison(Field(("metrics", "val/acc")), ">", Literal(0.5))),
    ],
)
def test_documented_examples(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = 1 OR b = 2 AND c = 3", Or((A, And((B, C))))),
        ("a = 1 AND b = 2 OR c = 3", Or((And((A, B)), C))),
        ("a = 1 AND (b = 2 OR c = 3)", And((A, Or((B, C))))),
        ("NOT a = 1 AND b = 2", And((Not(A), B))),
        ("NOT (a = 1 AND b = 2)", Not(And((A, B)))),
        ("not not a = 1", Not(Not(A))),
        ("-a = 1 or -(b = 2)", Or((Not(A), Not(B)))),
        ("a = 1 and b = 2 and c = 3", And((A, B, C))),
        ("a = 1 Or b = 2 oR c = 3", Or((A, B, C))),
        ("(a = 1 AND b = 2) AND c = 3", And((And((A, B)), C))),
        ("((a = 1))", A),
        ("a=1 AND(b=2)", And((A, B))),
    ],
)
def test_precedence_and_parentheses(text: str, expected: Expr) -> None:
    assert parse_filter(text) == expected


@pytest.mark.parametrize(
    ("value_text", "expected"),
    [
        ("1", 1),
        ("-3", -3),
        ("+2", 2),
        ("0.5", 0.5),
        (".5", 0.5),
        ("1e3", 1000.0),
        ("-2.5E-3", -0.0025),
        ('"x y"', "x y"),
        ("'single'", "single"),
        (r'"say \"hi\""', 'say "hi"'),
        (r"'it\'s'", "it's"),
        (r'"tab\there\\"', "tab\there\\"),
        ('""', ""),
        ("true", True),
        ("FALSE", False),
        ("FAILED", "FAILED"),
        ('"true"', "true"),
    ],
)
def test_literal_values(value_text: str, expected: int | float | str | bool) -> None:
    comparison = parse_filter(f"x = {value_text}")
    assert isinstance(comparison, Comparison)
    assert isinstance(comparison.value, Literal)
    assert comparison.value.value == expected
    assert type(comparison.value.value) is type(expected)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("a = current.metrics.x", Field(("current", "metrics", "x"))),
        ("a = `x`", Field(("x",))),
        ("a:*", Present()),
        ("a : *", Present()),
    ],
)
def test_field_references_and_present(text: str, expected: Field | Present) -> None:
    comparison = parse_filter(text)
    assert isinstance(comparison, Comparison)
    assert comparison.value == expected


@pytest.mark.parametrize(
    ("text", "path"),
    [
        ("metrics.`val/acc` > 0.5", ("metrics", "val/acc")),
        ("`and`.b = 1", ("and", "b")),
        (r"tags.`a\`b`.`c.d` = 1", ("tags", "a`b", "c.d")),
        ("`1st` = 1", ("1st",)),
        ("true = 1", ("true",)),
    ],
)
def test_backtick_segments(text: str, path: tuple[str, ...]) -> None:
    comparison = parse_filter(text)
    assert isinstance(comparison, Comparison)
    assert comparison.field.path == path
    assert parse_filter(str(comparison)) == comparison


def test_positions_and_comparisons_in_order() -> None:
    expr = parse_filter("a = 1 AND  (b = 2 OR NOT c = 3)")
    found = comparisons(expr)
    assert found == [A, B, C]
    assert [c.position for c in found] == [0, 12, 25]


@pytest.mark.parametrize(
    ("text", "canonical"),
    [
        ("metrics.val_accuracy>=current.metrics.val_accuracy", "metrics.val_accuracy >= current.metrics.val_accuracy"),
        ("dataset = 'digits@v2'", 'dataset = "digits@v2"'),
        ("state = FAILED", 'state = "FAILED"'),
        ("tags.team : vision", 'tags.team:"vision"'),
        ("a:*", "a:*"),
        ("flag = TRUE", "flag = true"),
        ("a = `b`", "a = `b`"),
        (r"s = 'a\"b\nc'", r's = "a\"b\nc"'),
        ("metrics.`val/acc` > 5e-1", "metrics.`val/acc` > 0.5"),
        ("a = 1 or b = 2 and c = 3", "a = 1 OR b = 2 AND c = 3"),
        ("(a = 1 or b = 2) and c = 3", "(a = 1 OR b = 2) AND c = 3"),
        ("-(a = 1 and b = 2)", "NOT (a = 1 AND b = 2)"),
        ("(a = 1 and b = 2) and c = 3", "(a = 1 AND b = 2) AND c = 3"),
    ],
)
def test_canonical_text_round_trips(text: str, canonical: str) -> None:
    expr = parse_filter(text)
    assert str(expr) == canonical
    assert parse_filter(canonical) == expr


@pytest.mark.parametrize(
    ("text", "position", "token", "expected"),
    [
        ("metrics.acc > )", 14, "')'", "expected a value after '>'"),
        ('dataset = "digits', 10, "'\"digits'", "unterminated string"),
        ("`val/acc > 1", 0, "'`val/acc > 1'", "unterminated name"),
        ("a = 1 & b = 2", 6, "'&'", "unexpected character"),
        ("a = 1 )", 6, "')'", "expected AND, OR or the end of the filter"),
        ("a = 1 b = 2", 6, "'b'", "expected AND, OR or the end of the filter"),
        ("()", 1, "')'", "empty parentheses"),
        ("metrics.acc", 11, "end of filter", "expected an operator"),
        ("a AND b = 1", 2, "'AND'", "expected an operator"),
        ("(a = 1", 6, "end of filter", "to close the '(' at position 0"),
        ("a = 1 AND", 9, "end of filter", "expected a comparison or '(' after 'AND'"),
        ("NOT", 3, "end of filter", "expected a comparison or '(' after 'NOT'"),
        ("1 = a", 0, "'1'", "expected a comparison"),
        ("a = *", 4, "'*'", "'*' is allowed only after ':'"),
        ("a. = 1", 2, "' '", "expected a name after '.'"),
        ("a = 1.2.3", 4, "'1.2.3'", "invalid number"),
        ("a = 12abc", 4, "'12abc'", "invalid number"),
        ("a = 1e999", 4, "'1e999'", "number out of range"),
        ("- a = 1", 2, "'a'", "directly after '-'"),
        ("a = ``", 4, "'``'", "expected a name inside the backticks"),
        ("a == 1", 3, "'='", "expected a value after '='"),
    ],
)
def test_errors_name_position_token_and_expectation(text: str, position: int, token: str, expected: str) -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter(text)
    message = caught.value.message
    assert message.startswith(f"invalid filter at position {position} ({token}): ")
    assert expected in message
    assert message.endswith(f'in "{text}"')
    assert caught.value.metadata["field"] == "filter"
    assert caught.value.metadata["position"] == str(position)


def test_error_metadata_carries_the_token() -> None:
    with pytest.raises(InvalidArgument) as caught:
        parse_filter("metrics.acc > )")
    assert caught.value.metadata == {"field": "filter", "position": "14", "token": ")"}


@pytest.mark.parametrize(
    "text",
    ["(" * (MAX_DEPTH + 1) + "a = 1" + ")" * (MAX_DEPTH + 1), "NOT " * (MAX_DEPTH + 1) + "a = 1"],
)
def test_nesting_is_limited(text: str) -> None:
    with pytest.raises(InvalidArgument, match=f"deeper than {MAX_DEPTH} levels"):
        parse_filter(text)


def test_nesting_at_the_limit_parses() -> None:
    assert parse_filter("(" * MAX_DEPTH + "a = 1" + ")" * MAX_DEPTH) == A
    assert isinstance(parse_filter("NOT " * MAX_DEPTH + "a = 1"), Not)


def test_length_is_limited() -> None:
    text = "a = 1 AND " * (MAX_LENGTH // 10) + "b = 2"
    with pytest.raises(InvalidArgument, match=f"at most {MAX_LENGTH} are allowed") as caught:
        parse_filter(text)
    assert caught.value.metadata["position"] == str(MAX_LENGTH)
    assert len(caught.value.message) < 400


VALUES: dict[str, object] = {
    "metrics.val_accuracy": 0.91,
    "current.metrics.val_accuracy": 0.93,
    "metrics.epochs": 10,
    "params.lr": 0.001,
    "state": "SUCCEEDED",
    "tags.team": "vision",
    "tags.labels": ["a", "b"],
    "flag": True,
    "create_time": "2026-02-01T00:00:00Z",
    "nothing": None,
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.val_accuracy > 0.9", True),
        ("metrics.val_accuracy >= current.metrics.val_accuracy", False),
        ("current.metrics.val_accuracy > metrics.val_accuracy", True),
        ("metrics.epochs = 10.0", True),
        ("metrics.epochs > 9.5", True),
        ("metrics.epochs <= 10", True),
        ("params.lr < 0.01 AND state = SUCCEEDED", True),
        ("state != FAILED", True),
        ("NOT state = FAILED", True),
        ('create_time > "2026-01-01T00:00:00Z"', True),
        ("tags.team = 'nlp' OR tags.team = vision", True),
        ("tags.team:vision", True),
        ("tags.labels:b", True),
        ("tags.labels:c", False),
        ("flag = true", True),
        ("flag = 1", False),
        ("metrics.epochs = true", False),
        # absent fields: every comparison is False, `:*` tells presence
        ("metrics.f1 > 0.8", False),
        ("metrics.f1 != 0.8", False),
        ("metrics.f1 < 0.8", False),
        ("NOT metrics.f1 > 0.8", True),
        ("metrics.f1:*", False),
        ("metrics.val_accuracy:*", True),
        ("nothing:*", False),
        ("nothing = 1", False),
        ("metrics.val_accuracy > baseline.metrics.val_accuracy", False),
        ("metrics.val_accuracy != baseline.metrics.val_accuracy", False),
        # numbers against strings: unordered and unequal, never an exception
        ("state > 1", False),
        ("metrics.val_accuracy < 'abc'", False),
        ("state = 1", False),
        ("state != 1", True),
        ("tags.labels > 1", False),
        ("tags.labels != 1", True),
    ],
)
def test_evaluate(text: str, expected: bool) -> None:
    assert evaluate(parse_filter(text), lookup(VALUES)) is expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("metrics.val_accuracy > 0.9", []),
        (
            "metrics.val_accuracy >= current.metrics.val_accuracy",
            ["metrics.val_accuracy >= current.metrics.val_accuracy (0.91 >= 0.93)"],
        ),
        ("metrics.f1 > 0.8", ["metrics.f1 > 0.8 (metrics.f1 is missing)"]),
        ("metrics.epochs > baseline.x", ["metrics.epochs > baseline.x (baseline.x is missing)"]),
        (
            "metrics.val_accuracy > 0.9 AND params.lr > 0.01 AND state = FAILED",
            ["params.lr > 0.01 (0.001 > 0.01)", 'state = "FAILED" ("SUCCEEDED" = "FAILED")'],
        ),
        ("tags.team = nlp OR tags.team = vision", []),
        (
            "metrics.val_accuracy > 0.95 AND (tags.team = nlp OR metrics.f1:*)",
            [
                "metrics.val_accuracy > 0.95 (0.91 > 0.95)",
                'tags.team = "nlp" ("vision" = "nlp")',
                "metrics.f1:* (metrics.f1 is missing)",
            ],
        ),
        ("NOT state = SUCCEEDED", ['NOT state = "SUCCEEDED" ("SUCCEEDED" = "SUCCEEDED")']),
        ("NOT metrics.epochs:*", ["NOT metrics.epochs:* (metrics.epochs is present)"]),
    ],
)
def test_failed_conditions(text: str, expected: list[str]) -> None:
    assert failed_conditions(parse_filter(text), lookup(VALUES)) == expected


def test_lookup_receives_fields() -> None:
    seen: list[Field] = []

    def record(field: Field) -> object:
        seen.append(field)
        raise KeyError(field)

    evaluate(parse_filter("metrics.`val/acc` > current.x"), record)
    assert seen == [Field(("metrics", "val/acc")), Field(("current", "x"))]


# A seeded generator of random trees: str() must parse back to an equal tree.

_NAMES = ["a", "metrics", "val_accuracy", "_x1", "AND", "or", "not", "val/acc", "a`b", "c.d", "x\\y", "sp ace"]
_LITERALS: list[int | float | str | bool] = [
    0,
    7,
    -42,
    10**30,
    0.5,
    -1e-7,
    1e22,
    2.0,
    "",
    "a\"b'c",
    "\n\\",
    True,
    False,
]


def _random_comparison(rng: random.Random) -> Comparison:
    field = Field(tuple(rng.choice(_NAMES) for _ in range(rng.randint(1, 3))))
    op = rng.choice(["=", "!=", "<", "<=", ">", ">=", ":"])
    value: Literal | Field | Present
    kind = rng.random()
    if kind < 0.2:
        value = Field(tuple(rng.choice(_NAMES) for _ in range(rng.randint(1, 3))))
    elif kind < 0.3 and op == ":":
        value = Present()
    else:
        value = Literal(rng.choice([*_LITERALS, rng.uniform(-1e6, 1e6), rng.randint(-(10**9), 10**9)]))
    return Comparison(field, op, value)


def _random_expr(rng: random.Random, depth: int) -> Expr:
    choice = rng.random() if depth < 4 else 0.0
    if choice < 0.4:
        return _random_comparison(rng)
    if choice < 0.55:
        return Not(_random_expr(rng, depth + 1))
    items = tuple(_random_expr(rng, depth + 1) for _ in range(rng.randint(2, 3)))
    return And(items) if choice < 0.8 else Or(items)


@pytest.mark.parametrize("seed", range(200))
def test_random_trees_round_trip(seed: int) -> None:
    expr = _random_expr(random.Random(seed), 0)
    text = str(expr)
    assert parse_filter(text) == expr, text
    assert str(parse_filter(text)) == text
