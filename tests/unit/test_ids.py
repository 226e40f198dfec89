from __future__ import annotations

import os
import uuid

import pytest

from forgeline.ids import derived_uuid, derived_uuids, legacy_id, new_uuid4

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
