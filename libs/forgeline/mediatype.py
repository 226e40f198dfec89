"""Media types (RFC 9110 section 8.3.1) as clients send them in Content-Type headers.

An upload's content type is handed back to the client as a header it must send with its PUT,
so it must be a header value that cannot smuggle anything in: the strict grammar below
(ASCII only, no control characters, not even the tab the RFC's OWS allows).

    media-type = type "/" subtype *( OWS ";" OWS [ parameter ] )
    parameter  = token "=" ( token / quoted-string )
"""

from __future__ import annotations

import re

_TOKEN = r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+"
_QUOTED = r'"(?:[ !#-\[\]-~]|\\[ -~])*"'
_PARAMETER = rf"{_TOKEN}=(?:{_TOKEN}|{_QUOTED})"
_MEDIA_TYPE = re.compile(rf"{_TOKEN}/{_TOKEN}(?: *; *(?:{_PARAMETER})?)*")
# The same grammar as an anchored JSON Schema (ECMA-262) pattern, for the OpenAPI document.
PATTERN = f"^{_MEDIA_TYPE.pattern}$"

MAX_LENGTH = 255


def media_type_problem(value: str) -> str | None:
    """Why ``value`` is not an acceptable media type, or None when it is one."""
    if any(ord(c) < 0x20 or ord(c) == 0x7F for c in value):
        return "must not contain control characters (CR, LF, tab, NUL…)"
    if len(value) > MAX_LENGTH:
        return f"must be at most {MAX_LENGTH} characters"
    if not _MEDIA_TYPE.fullmatch(value):
        return "must be a media type: type/subtype with optional '; name=value' parameters, e.g. image/png"
    return None


def is_media_type(value: str) -> bool:
    return media_type_problem(value) is None


def essence(value: str) -> str:
    """type/subtype in lower case, parameters dropped: what two content types must share to match."""
    return value.split(";", 1)[0].strip().lower()
