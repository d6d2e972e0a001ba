"""A declared inventory: cards from JSON, each entry checked, every mistake one line naming it."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atelier.errors import InvalidArgument
from atelier.scheduling.inventory import MAX_CARDS_PER_NODE as MAX_CARDS
from services.scheduler.agent.discovery import DeclaredInventory
from services.scheduler.catalogue import card_spec


def _cards(*entries: object) -> DeclaredInventory:
    return DeclaredInventory(json.dumps({"cards": list(entries)}), card_spec, "inv.json")


def test_catalogue_models_and_declared_ones() -> None:
    found = _cards(
        {"model": "A100-80", "count": 2},
        {"model": "Custom", "memory_gib": 12, "compute_capability": "8.6", "healthy": False},
    ).inventory()

    assert [c.model for c in found.cards] == ["A100-80", "A100-80", "Custom"]
    assert found.cards[2].memory_total_bytes == 12 * 1024**3
    assert not found.cards[2].health.healthy
    assert len(found.links) == 3


@pytest.mark.parametrize(
    ("entry", "expected"),
    [
        ({"model": "A100-80", "count": "x"}, "^inv.json: card entry 0 .*: count: Input should be a valid integer"),
        ({"model": "A100-80", "count": -1}, "count: Input should be greater than or equal to 1"),
        ({"model": "A100-80", "count": MAX_CARDS + 1}, f"count: Input should be less than or equal to {MAX_CARDS}"),
        ({"model": "X", "memory_gib": "big", "compute_capability": "8.0"}, "memory_gib: Input should be a valid"),
        ({"model": "X", "memory_gib": 1e12, "compute_capability": "8.0"}, "memory_gib: Input should be less than"),
        ({"model": "X", "memory_gib": 16, "compute_capability": "eight"}, "compute_capability: String should match"),
        ({"model": "A100-80", "colour": "red"}, "colour: Extra inputs are not permitted"),
        ({"count": 2}, "model: Field required"),
        ("A100-80", "card entry 0 .*: entry: Input should be a valid dictionary"),
        ({"model": "Unknown"}, "card model 'Unknown' is not in the catalogue; give memory_gib and compute_capability"),
    ],
)
def test_a_bad_entry_is_named(entry: object, expected: str) -> None:
    with pytest.raises(InvalidArgument, match=expected) as caught:
        _cards(entry)
    assert caught.value.message.startswith("inv.json: ")
    assert "\n" not in caught.value.message


def test_too_many_cards_in_all() -> None:
    with pytest.raises(InvalidArgument, match=f"more than {MAX_CARDS} cards"):
        _cards({"model": "T4", "count": MAX_CARDS}, {"model": "T4"})


def test_a_file_that_cannot_be_read(tmp_path: Path) -> None:
    with pytest.raises(InvalidArgument, match="cannot read the inventory .*missing.json: No such file or directory"):
        DeclaredInventory.from_file(tmp_path / "missing.json", card_spec)
    with pytest.raises(InvalidArgument, match="Is a directory"):
        DeclaredInventory.from_file(tmp_path, card_spec)
