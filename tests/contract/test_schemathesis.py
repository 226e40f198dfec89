"""Schemathesis over the gateway's /openapi.json: every operation of the three families (Logister,
Forge Logger, MessagePack), never a 5xx.

A bounded, repeatable run: a fixed seed, derandomized generation, a few fuzzed examples per
operation on top of schemathesis' deterministic coverage cases, and no example database.
Each operation runs twice, once with the bootstrap tokens (so requests get past
authentication and reach validation and storage; the blob PUT and completion get a freshly
signed upload token) and once with nothing but what schemathesis generates. The only 5xx
the document declares, 501 on /api/sql/select, is expected there.

Each test gets its own gateway on its own data directory: schemathesis ends an ASGI app's
lifespan after every test, and a stopped gateway does not start again.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import not_a_server_error
from schemathesis.config import SchemathesisConfig
from starlette.applications import Starlette

from forgeline.blobstore.grants import GrantSigner
from forgeline.blobstore.port import UploadGrant
from forgeline.clock import FakeClock
from forgeline.config import Settings
from services.gateway.app import create_app
from services.gateway.openapi import openapi_document
from tests.conftest import GatewayHarness, bootstrap

pytestmark = pytest.mark.contract

# Fuzzed examples per operation and pass; the coverage phase adds its own deterministic cases.
MAX_EXAMPLES = 25
SEED = 14
UPLOAD_CONTENT_TYPE = "application/octet-stream"
UPLOAD_MAX_BYTES = 64

CONFIG = SchemathesisConfig.from_dict(
    {
        "seed": SEED,
        "generation": {"max-examples": MAX_EXAMPLES, "deterministic": True, "database": "none"},
        "operations": [
            {
                "include-path": "/api/sql/select",
                "checks": {"not_a_server_error": {"expected-statuses": ["2xx", "3xx", "4xx", "501"]}},
            }
        ],
    }
)


@schemathesis.serializer("application/msgpack")
def _msgpack(ctx: Any, value: Any) -> bytes:
    return bytes(msgpack.packb(_packable(value)))


@schemathesis.serializer("application/x-ndjson")
def _ndjson(ctx: Any, value: Any) -> bytes:
    # json, not orjson: generated integers may exceed 64 bits.
    return value.encode("utf-8", "surrogatepass") if isinstance(value, str) else json.dumps(value).encode()


def _packable(value: Any) -> Any:
    """JSON values as MessagePack holds them: integers past 64 bits become strings."""
    if isinstance(value, bool) or value is None:
        return value
    if isinstance(value, int):
        return value if -(2**63) <= value < 2**64 else str(value)
    if isinstance(value, list):
        return [_packable(v) for v in value]
    if isinstance(value, dict):
        return {k: _packable(v) for k, v in value.items()}
    return value


schema = schemathesis.openapi.from_dict(openapi_document(), config=CONFIG)


@dataclass
class Gateway:
    app: Starlette
    tokens: dict[str, str]
    signer: GrantSigner
    clock: FakeClock

    def credentials(self, path: str) -> dict[str, str]:
        """The header each family authenticates with (bootstrap tokens)."""
        if path.startswith("/api/v1/"):
            return {"Authorization": f"Bearer {self.tokens['logister_token']}"}
        if path.startswith("/v1/"):
            return {"Authorization": f"Bearer {self.tokens['forge_token']}"}
        if path in ("/api/models", "/api/export", "/api/sql/select"):
            return {"x-api-key": self.tokens["msgpack_secret_key"]}
        if path.startswith("/api/"):
            return {"x-public-token": self.tokens["msgpack_public_token"]}
        return {}

    def upload_token(self, upload_id: str) -> str:
        """What POST /v1/ingest/uploads would hand out for one small octet-stream file."""
        t = self.tokens
        grant = UploadGrant(
            upload_id=upload_id,
            key=f"{t['project_id']}/{upload_id}/file.bin",
            content_type=UPLOAD_CONTENT_TYPE,
            max_bytes=UPLOAD_MAX_BYTES,
            expires_at=int(self.clock.time()) + 600,
            meta={
                "organisation_id": t["organisation_id"],
                "project_id": t["project_id"],
                "environment": t["environment"],
                "token_id": "",
                "session_id": "",
                "attachment_type": "other",
                "filename": "file.bin",
            },
        )
        return self.signer.token(grant)


@pytest.fixture
def api(tmp_path: Path) -> Iterator[Gateway]:
    bus, tokens = bootstrap(tmp_path)
    unlimited = 10**9  # the limiters would turn the run into 429s
    settings_ = Settings(data_dir=tmp_path, token_refresh_seconds=0.2).with_overrides(
        logister_rate_limit_requests=unlimited,
        forge_rate_limit_requests=unlimited,
        msgpack_rate_limit_requests=unlimited,
        auth_failure_rate_limit_requests=unlimited,
    )
    clock = FakeClock(time.time())
    app = create_app(settings_, bus, clock)  # creates the blob signing key
    signer = GrantSigner((tmp_path / "blob-signing.key").read_bytes())
    yield Gateway(app, tokens, signer, clock)


def test_the_run_covers_the_served_document(gateway: GatewayHarness) -> None:
    response = gateway.client.get("/openapi.json")
    assert response.status_code == 200 and response.json() == openapi_document()
    families = {"/api/v1/ingest_events", "/v1/ingest/events", "/api/events", "/v1/blobs/{upload_id}"}
    assert families <= {result.ok().path for result in schema.get_all_operations()}


@pytest.mark.parametrize("credentials", ["tokens", "anonymous"])
@schema.parametrize()
@settings(suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow], deadline=None)
def test_never_a_server_error(case: Any, api: Gateway, credentials: str) -> None:
    headers: dict[str, str] = {}
    if credentials == "tokens":
        headers = api.credentials(case.operation.path)
        if case.operation.path.startswith("/v1/blobs/"):
            # The signature is the authorization: a valid token for a fresh upload id.
            upload_id = str(uuid.uuid4())
            case.path_parameters = {**(case.path_parameters or {}), "upload_id": upload_id}
            case.query = {**(case.query or {}), "token": api.upload_token(upload_id)}
    elif case.operation.path.startswith("/v1/blobs/") and isinstance((case.query or {}).get("token"), str):
        # A generated token in the payload.signature shape reaches the signature check itself.
        token = case.query["token"]
        if "." not in token:
            case.query = {**case.query, "token": f"{token}.{token}"}
    case.call_and_validate(app=api.app, headers=headers, checks=[not_a_server_error])
