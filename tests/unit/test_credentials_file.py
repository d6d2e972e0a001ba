"""The credentials file is only ever replaced or removed when it is one: its path comes from a variable."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from atelier.client.credentials import configured_token, read_credentials, remove_credentials, write_credentials
from atelier.errors import InvalidArgument
from atelier.stack.addresses import service_address


def test_written_then_removed(tmp_path: Path) -> None:
    path = tmp_path / "home" / "credentials"
    write_credentials(path, "secret", "alice")
    write_credentials(path, "newer", "alice")

    assert read_credentials(path) == {"token": "newer", "principal": "alice"}
    assert path.stat().st_mode & 0o777 == 0o600
    assert remove_credentials(path)
    assert not path.exists()
    assert not remove_credentials(path)


def test_another_file_is_left_alone(tmp_path: Path) -> None:
    other = tmp_path / "notes.txt"
    other.write_text("my notes")

    with pytest.raises(InvalidArgument, match="notes.txt is not an Atelier credentials file"):
        remove_credentials(other)
    with pytest.raises(InvalidArgument, match="notes.txt is not an Atelier credentials file"):
        write_credentials(other, "secret", "alice")

    assert other.read_text() == "my notes"


def test_what_is_not_a_regular_file_is_left_alone(tmp_path: Path) -> None:
    fifo = tmp_path / "fifo"
    os.mkfifo(fifo)  # like a device: /dev/null named by mistake

    for path in (fifo, tmp_path):
        with pytest.raises(InvalidArgument, match="not a regular file"):
            remove_credentials(path)
        with pytest.raises(InvalidArgument, match="not a regular file"):
            write_credentials(path, "secret", "alice")

    assert fifo.exists()


def test_a_link_to_credentials_is_removed_not_its_target(tmp_path: Path) -> None:
    write_credentials(tmp_path / "real", "secret", "alice")
    (tmp_path / "link").symlink_to(tmp_path / "real")

    assert remove_credentials(tmp_path / "link")
    assert (tmp_path / "real").exists()
    assert not (tmp_path / "link").is_symlink()


@pytest.mark.parametrize("secret", ["a\nb", "caf\u00e9", "two words", "\udcff"])
def test_a_token_that_cannot_travel_in_a_header_is_refused(secret: str, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_TOKEN", secret)
    with pytest.raises(InvalidArgument, match="the token in ATELIER_TOKEN is not one: tokens are printable ASCII"):
        configured_token()


def test_an_address_that_cannot_be_one_is_refused(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ATELIER_DATA_ADDRESS", "host name:1")
    with pytest.raises(InvalidArgument, match="ATELIER_DATA_ADDRESS is 'host name:1': an address is host:port"):
        service_address("data")
    monkeypatch.setenv("ATELIER_DATA_ADDRESS", "127.0.0.1:50051")
    assert service_address("data") == "127.0.0.1:50051"
