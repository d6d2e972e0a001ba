"""OIDC bearer tokens: JWTs of the lab's identity provider, verified against its published keys
(found through its discovery document, served here by a real HTTP server), become Atelier users."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import grpc
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa

from atelier.client.credentials import read_credentials
from atelier.data.v1 import data_service_pb2 as data_pb
from atelier.data.v1 import data_service_pb2_grpc
from atelier.iam.v1 import iam_service_pb2 as pb
from atelier.iam.v1 import iam_service_pb2_grpc
from atelier.iam.v1 import resources_pb2 as res


class Provider:
    """An identity provider: a signing key, its JWKS and discovery document over HTTP."""

    def __init__(self) -> None:
        self.key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        public = json.loads(jwt.algorithms.RSAAlgorithm.to_jwk(self.key.public_key()))
        self.jwks = {"keys": [{**public, "kid": "k1", "use": "sig", "alg": "RS256"}]}
        provider = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 - http.server's name
                documents = {
                    "/.well-known/openid-configuration": {
                        "issuer": provider.issuer,
                        "jwks_uri": f"{provider.issuer}/jwks",
                    },
                    "/jwks": provider.jwks,
                }
                body = json.dumps(documents.get(self.path, {})).encode()
                self.send_response(200 if self.path in documents else 404)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.issuer = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def token(self, username: str, audience: str = "atelier", lifetime: float = 300, key: Any = None) -> str:
        now = int(time.time())
        claims = {
            "iss": self.issuer,
            "aud": audience,
            "sub": f"sub-{username}",
            "preferred_username": username,
            "iat": now,
            "exp": now + int(lifetime),
        }
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": "k1"})


@pytest.fixture
def provider() -> Iterator[Provider]:
    made = Provider()
    yield made
    made.server.shutdown()


def test_identity_provider_tokens_become_users_whose_roles_atelier_keeps(
    serve: Callable[[Callable[[], Any]], str], tmp_path: Path, provider: Provider
) -> None:
    from gateway.iam.server import build
    from gateway.iam.settings import IamSettings
    from services.data.server import build as build_data
    from services.data.settings import DataSettings

    settings = IamSettings(home=tmp_path / "iam", auth="on", auth_cache_seconds=0, oidc_issuer=provider.issuer)
    address = serve(lambda: build(settings))
    admin = (("authorization", f"Bearer {read_credentials(tmp_path / 'iam' / 'credentials')['token']}"),)
    iam = iam_service_pb2_grpc.IamServiceStub(grpc.insecure_channel(address))
    data_address = serve(
        lambda: build_data(DataSettings(home=tmp_path / "data", auth="on", iam_address=address, auth_cache_seconds=0))
    )
    data = data_service_pb2_grpc.DataServiceStub(grpc.insecure_channel(data_address))
    data.CreateProject(data_pb.CreateProjectRequest(project_id="vision"), metadata=admin)

    carol = provider.token("carol")
    identity = iam.Authenticate(pb.AuthenticateRequest(token=carol))
    assert (identity.principal, identity.token) == ("users/carol", "oidc")
    listing = data_pb.ListDatasetsRequest(parent="projects/vision")
    with pytest.raises(grpc.RpcError) as refused:
        data.ListDatasets(listing, metadata=(("authorization", f"Bearer {carol}"),))
    assert refused.value.code() == grpc.StatusCode.PERMISSION_DENIED
    member = res.Member(principal="users/carol", role=res.ROLE_VIEWER)
    iam.CreateMember(pb.CreateMemberRequest(parent="projects/vision", member=member), metadata=admin)
    data.ListDatasets(listing, metadata=(("authorization", f"Bearer {carol}"),))

    other_key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    for bad, why in (
        (provider.token("carol", lifetime=-60), "expired"),
        (provider.token("carol", audience="someone-else"), "not valid"),
        (provider.token("carol", key=other_key), "not valid"),
    ):
        with pytest.raises(grpc.RpcError) as caught:
            iam.Authenticate(pb.AuthenticateRequest(token=bad))
        assert caught.value.code() == grpc.StatusCode.UNAUTHENTICATED
        assert why in str(caught.value.details())
