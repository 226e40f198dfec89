"""Exit codes the services share with `forgeline up`, which must tell a setup problem (do not
restart: the same start would fail the same way) from a crash (restart from the last commit)."""

from __future__ import annotations

# Refused settings: a bad value, a public admin port without a key.
EXIT_BAD_SETTINGS = 2
# A listening port could not be bound (taken by another program, or a refused address).
EXIT_CANNOT_SERVE = 3
