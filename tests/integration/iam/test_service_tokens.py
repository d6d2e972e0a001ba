"""Service accounts' secrets kept from a file: a deployment starts its IAM service again and again with
the same file, and each start keeps the same tokens."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from atelier.errors import InvalidArgument, Unauthenticated
from atelier.runtime.auth import new_secret
from atelier.runtime.database import create_engine
from gateway.iam.principals import Principals
from gateway.iam.server import build, service_tokens
from gateway.iam.settings import IamSettings
from gateway.iam.tokens import Tokens


def settings_with(tmp_path: Path, database_url: str, accounts: dict[str, dict[str, str]]) -> IamSettings:
    path = tmp_path / "service-tokens.json"
    path.write_text(json.dumps(accounts))
    return IamSettings(home=tmp_path / "iam", database_url=database_url, service_tokens_file=str(path))


def test_a_restart_with_the_same_file_keeps_the_tokens(tmp_path: Path, database_url: str) -> None:
    data, agent = new_secret(), new_secret()
    settings = settings_with(
        tmp_path,
        database_url,
        {"svc-data": {"secret": data, "role": "service"}, "nodes": {"secret": agent, "role": "agent"}},
    )
    build(settings)
    build(settings)  # the second start used to fail: the token's id was taken by the first start's row
    engine = create_engine(database_url)
    tokens = Tokens(engine, _key(tmp_path))
    assert tokens.authenticate(data).principal.id == "svc-data"
    assert tokens.authenticate(agent).principal.id == "nodes"
    assert len(tokens.of_principal("serviceAccounts/svc-data")) == 1


def test_a_new_secret_in_the_file_replaces_the_old_one(tmp_path: Path, database_url: str) -> None:
    first, second = new_secret(), new_secret()
    build(settings_with(tmp_path, database_url, {"svc-data": {"secret": first}}))
    build(settings_with(tmp_path, database_url, {"svc-data": {"secret": second}}))
    tokens = Tokens(create_engine(database_url), _key(tmp_path))
    assert tokens.authenticate(second).principal.id == "svc-data"
    with pytest.raises(Unauthenticated):
        tokens.authenticate(first)


def test_a_revoked_secret_stays_revoked_when_registered_again(tmp_path: Path, database_url: str) -> None:
    secret = new_secret()
    settings = settings_with(tmp_path, database_url, {"svc-data": {"secret": secret}})
    build(settings)
    tokens = Tokens(create_engine(database_url), _key(tmp_path))
    (token,) = tokens.of_principal("serviceAccounts/svc-data")
    tokens.revoke(token.name)
    build(settings)
    with pytest.raises(Unauthenticated):
        tokens.authenticate(secret)


def test_a_secret_of_another_account_is_refused(tmp_path: Path, database_url: str) -> None:
    secret = new_secret()
    build(settings_with(tmp_path, database_url, {"svc-data": {"secret": secret}}))
    engine = create_engine(database_url)
    principals, tokens = Principals(engine), Tokens(engine, _key(tmp_path))
    clash = settings_with(tmp_path, database_url, {"svc-registry": {"secret": secret}})
    with pytest.raises(InvalidArgument, match="another token already has the id"):
        service_tokens(clash, principals, tokens)
    assert tokens.authenticate(secret).principal.id == "svc-data"


def _key(tmp_path: Path) -> bytes:
    return bytes.fromhex((tmp_path / "iam" / "iam-token.key").read_text().strip())
