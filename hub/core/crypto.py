"""Encryption at rest for payloads (seed 003: "criptografia de payloads sensíveis").

AES-256-GCM; the key is SHA-256 of HUB_SECRET_KEY, or of a random key generated once in
`<data_dir>/secret.key` when the setting is unset (fine for one host; several hosts must share
HUB_SECRET_KEY). A blob is `b"\x01" + nonce(12) + ciphertext+tag`; the leading version byte leaves
room for key rotation.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.core.errors import ConfigError
from hub.core.settings import Settings

VERSION = b"\x01"
NONCE_BYTES = 12


class DecryptionError(ConfigError):
    """A stored blob cannot be decrypted with this HUB_SECRET_KEY."""

    code = "decryption_failed"


class Cipher:
    def __init__(self, secret: str) -> None:
        self._aead = AESGCM(hashlib.sha256(secret.encode()).digest())

    @classmethod
    def from_settings(cls, settings: Settings) -> Cipher:
        if settings.secret_key is not None:
            return cls(settings.secret_key.get_secret_value())
        return cls(_generated_secret(settings.data_dir / "secret.key"))

    def encrypt(self, plaintext: bytes) -> bytes:
        nonce = os.urandom(NONCE_BYTES)
        return VERSION + nonce + self._aead.encrypt(nonce, plaintext, None)

    def decrypt(self, blob: bytes) -> bytes:
        if blob[:1] != VERSION:
            raise DecryptionError("unknown payload format")
        nonce = blob[1 : 1 + NONCE_BYTES]
        try:
            return self._aead.decrypt(nonce, blob[1 + NONCE_BYTES :], None)
        except InvalidTag as exc:
            raise DecryptionError(
                "payload does not decrypt: HUB_SECRET_KEY differs from the one that stored it"
            ) from exc


def derived_key(settings: Settings, label: str) -> bytes:
    """A key for another purpose (`label`, e.g. signing the console's cookies), derived from the
    same secret as the cipher's, so rotating HUB_SECRET_KEY rotates it too."""
    if settings.secret_key is not None:
        secret = settings.secret_key.get_secret_value()
    else:
        secret = _generated_secret(settings.data_dir / "secret.key")
    return hmac.new(secret.encode(), label.encode(), hashlib.sha256).digest()


def _generated_secret(path: Path) -> str:
    if path.exists():
        return path.read_text().strip()
    path.parent.mkdir(parents=True, exist_ok=True)
    secret = secrets.token_urlsafe(32)
    # O_EXCL: when several processes start at once, one writes and the others read its key
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return path.read_text().strip()
    with os.fdopen(fd, "w") as handle:
        handle.write(secret + "\n")
    return secret
