"""Checking a presented token, and the 401 every family answers when it is refused.

The body keeps the ``error`` text each API documents and adds a stable ``code`` (see
``RefusalCode``) that says what to fix: no token, not a token at all, a token of another
family, an invalid (unknown or revoked) token, or a token of an archived project.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Any

from forgeline.tenancy.model import Principal, Refusal, TenancyTable, TokenKind
from services.gateway.errors import ApiError

Refresh = Callable[[], Awaitable[None]]


async def check_token(
    table: TenancyTable, refresh: Refresh | None, presented: str | None, kinds: tuple[TokenKind, ...]
) -> Principal | Refusal:
    """``table.check``, after reading the control topic to its end when the token is unknown.

    A token created a moment ago (``forgeline tokens create`` has returned: its record is on
    the bus) may not have reached this replica's table yet; reading up to the topic's end
    before refusing makes create-then-use succeed whatever the follow interval. Revoked
    tokens take the same path as unknown ones, so the delay does not tell them apart.
    """
    result = table.check(presented, kinds)
    if isinstance(result, Refusal) and result.code == "invalid_token" and refresh is not None:
        await refresh()
        result = table.check(presented, kinds)
    return result


def unauthorized(error: dict[str, Any], refusal: Principal | Refusal | None) -> ApiError:
    """401 with the API's own ``error`` body and the refusal's ``code``."""
    code = refusal.code if isinstance(refusal, Refusal) else "invalid_token"
    return ApiError(401, {**error, "code": code}, reason="unauthorized")
