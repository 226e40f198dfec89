from __future__ import annotations

import os
import uuid

import pytest

from forgeline.ids import (
    derived_uuid,
    derived_uuids,
    is_owned,
    legacy_id,
    new_owned_uuid,
    new_uuid4,
    owned_uuid,
    owned_uuids,
)

pytestmark = pytest.mark.unit


def test_new_uuid4_is_version_4_and_unique() -> None:
    ids = {new_uuid4() for _ in range(10_000)}
    assert len(ids) == 10_000
    assert all(i.version == 4 and i.variant == uuid.RFC_4122 for i in ids)


def test_a_forked_child_does_not_repeat_the_parents_ids() -> None:
    new_uuid4()  # fill the pool
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.write(write, new_uuid4().bytes)
        os._exit(0)
    os.waitpid(pid, 0)
    child = uuid.UUID(bytes=os.read(read, 16))
    os.close(read)
    os.close(write)
    assert child != new_uuid4()


def test_derived_ids_and_legacy_ids_are_deterministic() -> None:
    assert derived_uuid("a", "b") == derived_uuid("a", "b") != derived_uuid("a", "c")
    event = uuid.UUID("12345678-9abc-4def-8123-456789abcdef")
    assert legacy_id(event) == 0x123456789ABC


def test_batch_ids_equal_one_derived_id_per_index() -> None:
    # A retried batch must map onto the rows an older gateway (one uuid5 per item) wrote.
    parts = ("forge_event", "project", "prod\x1fuction", "é" * 3)
    assert derived_uuids(250, *parts) == [derived_uuid(*parts, str(n)) for n in range(250)]
    assert derived_uuids(0, *parts) == []
    assert all(i.version == 5 for i in derived_uuids(3, "x"))


def test_owned_ids_verify_only_for_their_kind_and_project() -> None:
    session = new_owned_uuid("forge_session", "project-a")
    assert session.version == 8 and session.variant == uuid.RFC_4122
    assert is_owned(session, "forge_session", "project-a")
    assert is_owned(str(session).upper(), "forge_session", "project-a")
    assert not is_owned(session, "forge_session", "project-b")
    assert not is_owned(session, "forge_upload", "project-a")
    # Ids from before ids carried their owner, and anything that is no UUID, belong to nobody.
    assert not is_owned(uuid.uuid4(), "forge_session", "project-a")
    assert not is_owned(derived_uuid("x"), "forge_session", "project-a")
    assert not is_owned("not-a-uuid", "forge_session", "project-a")
    # One flipped bit anywhere breaks ownership.
    for bit in range(128):
        assert not is_owned(uuid.UUID(int=session.int ^ (1 << bit)), "forge_session", "project-a"), bit


def test_owned_ids_are_random_or_derived() -> None:
    fresh = {new_owned_uuid("forge_upload", "p") for _ in range(10_000)}
    assert len(fresh) == 10_000
    derived = owned_uuids("forge_event", "p", 3, "forge_event", "p", "production", "digest")
    assert derived == owned_uuids("forge_event", "p", 3, "forge_event", "p", "production", "digest")
    assert len(set(derived)) == 3 and all(is_owned(i, "forge_event", "p") for i in derived)
    assert derived != owned_uuids("forge_event", "q", 3, "forge_event", "p", "production", "digest")
    assert owned_uuid("k", "p", b"\x00" * 9) == owned_uuid("k", "p", b"\x00" * 9 + b"ignored")
    with pytest.raises(ValueError):
        owned_uuid("k", "p", b"short")
