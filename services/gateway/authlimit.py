"""Token guessing: one budget of failed authentications per source address, for every family.

Logister, Forge Logger and MessagePack keys all go through the same budget (120 failures a
minute by default), so an attacker cannot spread guesses over the families. Once a source
has used its budget, every token it presents is refused with 429 until the window ends —
right or wrong alike, or the answer would still tell a right guess from a wrong one. The
one exception keeps a client working behind the same address as a guesser (a shared NAT):
a token that authenticated from that source since its first failure of the window stays
accepted. A source without failures costs nothing here.
"""

from __future__ import annotations

from collections.abc import Callable

from starlette.requests import Request

from forgeline.clientip import ClientAddress
from forgeline.clock import Clock
from forgeline.tenancy.model import Principal, Refusal
from services.gateway.errors import ApiError
from services.gateway.ratelimit import Decision, FixedWindowLimiter


class AuthFailureLimit:
    # Tokens remembered per source, and sources remembered before stale windows are dropped:
    # bounded, whatever addresses and tokens clients cycle through.
    _TOKENS_PER_SOURCE = 64
    _PRUNE_AT = 10_000

    def __init__(self, limit: int, window_seconds: int, clock: Clock, client_address: ClientAddress) -> None:
        self._failures = FixedWindowLimiter(limit, window_seconds, clock)
        self._client_address = client_address
        # source → (the window's reset time, token ids that authenticated from it in that window)
        self._accepted: dict[str, tuple[int, set[str]]] = {}

    def authenticate(
        self,
        request: Request,
        attempt: Callable[[], Principal | Refusal | None],
        rate_limited: Callable[[Decision], ApiError],
    ) -> Principal | Refusal | None:
        """``attempt()``'s principal, or its refusal (a failure, counted); ``rate_limited`` once over budget."""
        source = self._client_address.of(request)
        state = self._failures.peek(source)
        principal = attempt()
        if state.remaining == 0:
            if not isinstance(principal, Principal) or principal.token_id not in self._tokens(source, state.reset_at):
                raise rate_limited(state)
            return principal
        if not isinstance(principal, Principal):
            self._failures.hit(source)  # fits: the budget had room
        elif state.remaining < state.limit:
            self._remember(source, state.reset_at, principal.token_id)
        return principal

    def _tokens(self, source: str, window: int) -> set[str]:
        entry = self._accepted.get(source)
        return entry[1] if entry is not None and entry[0] == window else set()

    def _remember(self, source: str, window: int, token_id: str) -> None:
        tokens = self._tokens(source, window)
        if token_id in tokens or len(tokens) >= self._TOKENS_PER_SOURCE:
            return
        if source not in self._accepted and len(self._accepted) >= self._PRUNE_AT:
            self._accepted = {k: v for k, v in self._accepted.items() if v[0] == window}
            if len(self._accepted) >= self._PRUNE_AT:
                return  # a hard bound: this client is then treated like any other from its source
        self._accepted[source] = (window, tokens | {token_id})
