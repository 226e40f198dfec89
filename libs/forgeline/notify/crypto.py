"""Provider secrets at rest: Fernet (AES-128-CBC + HMAC-SHA256) with one key per installation.

Hashing is not enough here: the notifier must present the token to GitHub or sign a webhook
with the secret, so it has to get the cleartext back. The key comes from
``FORGELINE_NOTIFY_KEY`` (a urlsafe-base64 Fernet key; set it on every replica of a Kafka
deployment) or else from ``<data-dir>/notify.key``, created once with mode 0600.
"""

from __future__ import annotations

import os
from pathlib import Path

from cryptography.fernet import Fernet, InvalidToken

from forgeline.private_fs import private_dir

KEY_FILE = "notify.key"
KEY_ENV = "FORGELINE_NOTIFY_KEY"


class SecretError(ValueError):
    """The key is unusable, or a stored secret does not decrypt with it."""


def load_key(data_dir: Path, configured: str = "") -> bytes:
    """``configured`` is Settings.notify_key (FORGELINE_NOTIFY_KEY); empty: the key file."""
    raw = configured.strip()
    if raw:
        key = raw.encode()
        _check(key, KEY_ENV)
        return key
    path = data_dir / KEY_FILE
    private_dir(data_dir)
    try:
        # O_EXCL: two processes starting together cannot both write a key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        key = path.read_bytes().strip()
        _check(key, str(path))
        return key
    key = Fernet.generate_key()
    with os.fdopen(fd, "wb") as handle:
        handle.write(key + b"\n")
        handle.flush()
        os.fsync(handle.fileno())
    return key


def _check(key: bytes, where: str) -> None:
    try:
        Fernet(key)
    except (ValueError, TypeError) as err:
        raise SecretError(f"{where}: not a Fernet key (32 urlsafe-base64 bytes): {err}") from err


class SecretBox:
    def __init__(self, key: bytes) -> None:
        self._fernet = Fernet(key)

    def encrypt(self, secret: str) -> str:
        return self._fernet.encrypt(secret.encode()).decode()

    def decrypt(self, token: str) -> str:
        try:
            return self._fernet.decrypt(token.encode()).decode()
        except InvalidToken as err:
            raise SecretError("a stored notify secret does not decrypt with this key (wrong notify.key?)") from err
