"""The vendored schemas are the published ones, unedited (sha256 in schemas/README.md)."""

from __future__ import annotations

import hashlib
import re

import jsonschema
import pytest

from tests.deploy import support

pytestmark = pytest.mark.deploy


def test_vendored_schemas_are_unedited_and_valid() -> None:
    listed = dict(
        (name, digest)
        for digest, name in re.findall(
            r"^([0-9a-f]{64})  (\S+\.json)$", (support.SCHEMAS / "README.md").read_text(encoding="utf-8"), re.M
        )
    )
    on_disk = sorted(p.name for p in support.SCHEMAS.glob("*.json"))
    assert sorted(listed) == on_disk
    for name in on_disk:
        assert hashlib.sha256((support.SCHEMAS / name).read_bytes()).hexdigest() == listed[name], name
        schema = support.schema(name)
        jsonschema.validators.validator_for(schema).check_schema(schema)
