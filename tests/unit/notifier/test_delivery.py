"""Backoff, token buckets and secrets at rest."""

from __future__ import annotations

import os
import random
import stat
from pathlib import Path

import pytest
from cryptography.fernet import Fernet

from forgeline.notify.crypto import SecretBox, SecretError, load_key
from services.notifier.delivery import TokenBucket, backoff_s

pytestmark = pytest.mark.unit


def test_backoff_grows_jitters_and_caps() -> None:
    rng = random.Random(7)
    for attempt in range(1, 12):
        ceiling = min(30.0, 0.5 * 2 ** (attempt - 1))
        delays = [backoff_s(attempt, 0.5, 30.0, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert max(delays) - min(delays) > ceiling / 10  # jittered, not a constant
    assert backoff_s(50, 0.5, 30.0, rng) <= 30.0


def test_token_bucket_allows_a_burst_then_paces() -> None:
    bucket = TokenBucket(rate=2.0, burst=3)
    now = bucket._last
    assert [bucket.wait_s(now) for _ in range(3)] == [0.0, 0.0, 0.0]
    assert bucket.wait_s(now) == pytest.approx(0.5)
    assert bucket.wait_s(now + 0.5) == 0.0  # one token refilled
    assert bucket.wait_s(now + 0.5) > 0
    assert bucket.wait_s(now + 100) == 0.0  # refilled, but never beyond the burst
    assert [bucket.wait_s(now + 100) for _ in range(2)] == [0.0, 0.0]
    assert bucket.wait_s(now + 100) > 0


def test_penalise_holds_the_target_for_retry_after() -> None:
    bucket = TokenBucket(rate=10.0, burst=10)
    bucket.penalise(2.0)
    assert bucket.wait_s(bucket._last) == pytest.approx(2.0)


def test_key_file_is_private_and_secrets_round_trip(tmp_path: Path) -> None:
    key = load_key(tmp_path)
    assert stat.S_IMODE(os.stat(tmp_path / "notify.key").st_mode) == 0o600
    assert load_key(tmp_path) == key  # read back, not regenerated
    box = SecretBox(key)
    token = box.encrypt("ghp_secret")
    assert "ghp_secret" not in token and box.decrypt(token) == "ghp_secret"
    with pytest.raises(SecretError):
        SecretBox(load_key(tmp_path / "other")).decrypt(token)
    with pytest.raises(SecretError, match="FORGELINE_NOTIFY_KEY"):
        load_key(tmp_path, "short")
    fresh = Fernet.generate_key().decode()
    assert load_key(tmp_path, fresh) == fresh.encode()
