from __future__ import annotations

import pytest

from atelier.errors import InvalidArgument
from atelier.names import DatasetRef, default_project, parse_dataset_ref, parse_name, validate_id


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("digits", DatasetRef("lab", "digits", "latest")),
        ("digits@v2", DatasetRef("lab", "digits", "v2")),
        ("vision/digits@production", DatasetRef("vision", "digits", "production")),
        ("digits@3fa9c1", DatasetRef("lab", "digits", "3fa9c1")),
        ("projects/p/datasets/d/versions/v3", DatasetRef("p", "d", "v3")),
        ("projects/p/datasets/d", DatasetRef("p", "d", "latest")),
    ],
)
def test_parse_dataset_ref(text: str, expected: DatasetRef) -> None:
    assert parse_dataset_ref(text, "lab") == expected


@pytest.mark.parametrize("bad", ["", "Digits", "-x", "a b", "x" * 64, "a/b/c", "é"])
def test_invalid_ids_name_the_value(bad: str) -> None:
    with pytest.raises(InvalidArgument, match=r"\[a-z0-9\]"):
        parse_dataset_ref(f"{bad}@v1" if bad else "@v1", "lab")


def test_validate_id_message() -> None:
    with pytest.raises(InvalidArgument, match="invalid dataset id 'Bad!'"):
        validate_id("dataset", "Bad!")


def test_parse_name_rejects_wrong_shape() -> None:
    assert parse_name("projects/a/datasets/b", "projects/{project}/datasets/{dataset}") == {
        "project": "a",
        "dataset": "b",
    }
    with pytest.raises(InvalidArgument, match="expected projects/{project}/datasets/{dataset}"):
        parse_name("projects/a/things/b", "projects/{project}/datasets/{dataset}")


def test_the_default_project_ignores_an_empty_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_PROJECT", "  ")
    assert default_project() == "default"
    monkeypatch.setenv("ATELIER_PROJECT", "vision")
    assert default_project() == "vision"
    monkeypatch.delenv("ATELIER_PROJECT")
    assert default_project() == "default"
