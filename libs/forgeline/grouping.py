"""The error grouping rule: which errors are "the same error" (one group, one inbox row).

Rule, in order:

1. An explicit ``fingerprint`` sent by the client wins, verbatim.
2. Otherwise: the first line of the message, normalized, plus the exception class:
   ``"<exception class>: <normalized first line>"`` (or just the line without a class).

Normalizing masks what varies between occurrences of one error, in this order:
UUIDs → ``<uuid>``; hex ids of 8+ hex digits (``0x…`` or bare, with at least one digit)
→ ``<hex>``; numbers (integers and decimals, with an optional sign) → ``<n>``; runs of
whitespace → one space; leading/trailing space stripped. So "user 123 not found" and
"user 456 not found" group together, and so do "request 3f2a9c1e9b failed" and "request
0b77aa31 failed". Words that merely contain digits (``utf8``, ``ipv6``, ``v2``) keep them:
only numbers standing alone (word boundaries) are masked.

The typed record's ``fingerprint`` column holds the explicit fingerprint when one was
sent, else the raw first line (the normalizer's Logister rule); we cannot tell "sent and
equal to the first line" from "not sent", and both mean the same thing here.

Pure functions; the normalizer keys ``typed.errors`` by ``group_key`` so every event of a
group lands in one partition (one replica owns a group).
"""

from __future__ import annotations

import re

from forgeline.ids import derived_uuid

_UUID = re.compile(r"\b[0-9a-fA-F]{8}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{4}-?[0-9a-fA-F]{12}\b")
_HEX = re.compile(r"\b(?:0[xX][0-9a-fA-F]+|(?=[0-9a-fA-F]*[0-9])[0-9a-fA-F]{8,})\b")
_NUMBER = re.compile(r"(?<![\w.])[-+]?\d+(?:\.\d+)?(?![\w.])")
_SPACE = re.compile(r"\s+")
MAX_FINGERPRINT = 512


def first_line(message: str) -> str:
    for line in message.splitlines():
        if line.strip():
            return line.strip()
    return ""


def normalize_line(line: str) -> str:
    """Mask UUIDs, hex ids and numbers (see the module docstring for the exact rule)."""
    text = _UUID.sub("<uuid>", line)
    text = _HEX.sub("<hex>", text)
    text = _NUMBER.sub("<n>", text)
    return _SPACE.sub(" ", text).strip()


def group_fingerprint(fingerprint: str, message: str, exception_class: str) -> str:
    """The grouping fingerprint of one typed error record (its three columns)."""
    line = first_line(message)
    if fingerprint and fingerprint != line:
        return fingerprint[:MAX_FINGERPRINT]
    normalized = normalize_line(line)
    return (f"{exception_class}: {normalized}" if exception_class else normalized)[:MAX_FINGERPRINT]


def group_key(project_id: str, fingerprint: str) -> bytes:
    """The bus key of a group: its errors and its status changes share one partition."""
    return f"{project_id}/{fingerprint}".encode()


def group_id(project_id: str, fingerprint: str) -> str:
    """A short stable id for a group (what `forgeline errors resolve` takes)."""
    return str(derived_uuid("error_group", project_id, fingerprint))
