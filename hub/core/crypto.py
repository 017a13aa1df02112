"""Encryption at rest for payloads, requests, headers and tenant secrets (seed 003).

AES-256-GCM under one of several keys. The keys come, newest first, from HUB_SECRET_KEYS
(comma-separated), then the lines of HUB_SECRET_KEY_FILE, then HUB_SECRET_KEY (the single key of
earlier versions), then `<data_dir>/secret.key` when it exists. With none of them set, a random key
is generated once in `<data_dir>/secret.key` (fine for one host; several hosts must share keys).

The newest key encrypts; each blob records which key did, by an 8-hex-digit key id (the first 4
bytes of a SHA-256 of the key), so decryption uses that key and `hub rotate-keys` finds what is not
yet under the newest one:

    version 2:  b"\\x02" + key id (4) + nonce (12) + ciphertext+tag
    version 1:  b"\\x01" + nonce (12) + ciphertext+tag     (before rotation: every key is tried)
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives.ciphers.aead import AESGCM

from hub.core.entropy import unique_bytes
from hub.core.errors import ConfigError, SettingError
from hub.core.settings import Settings

LEGACY = b"\x01"
VERSION = b"\x02"
KEY_ID_BYTES = 4
NONCE_BYTES = 12
HEADER_BYTES = 1 + KEY_ID_BYTES  # version + key id: what `prefix` returns


class DecryptionError(ConfigError):
    """A stored blob cannot be decrypted with the configured keys."""

    code = "decryption_failed"


class _Key:
    def __init__(self, secret: str) -> None:
        material = hashlib.sha256(secret.encode()).digest()
        self.aead = AESGCM(material)
        self.id = hashlib.sha256(b"hub-key-id:" + material).digest()[:KEY_ID_BYTES]


class Cipher:
    """Encrypts with the first key; decrypts with whichever key a blob names."""

    def __init__(self, *secrets: str) -> None:
        if not secrets:
            raise ValueError("a Cipher needs at least one key")
        self._keys = [_Key(s) for s in dict.fromkeys(secrets)]  # duplicates dropped, order kept
        self._by_id = {k.id: k for k in reversed(self._keys)}  # an id clash: the newest wins

    @classmethod
    def from_settings(cls, settings: Settings) -> Cipher:
        return cls(*configured_secrets(settings))

    @property
    def key_id(self) -> str:
        """The id of the key that encrypts, as hex."""
        return self._keys[0].id.hex()

    @property
    def key_ids(self) -> list[str]:
        return [k.id.hex() for k in self._keys]

    @property
    def prefix(self) -> bytes:
        """The first bytes of every blob this cipher writes (version and key id)."""
        return VERSION + self._keys[0].id

    def encrypt(self, plaintext: bytes) -> bytes:
        key = self._keys[0]
        nonce = unique_bytes(NONCE_BYTES)
        return VERSION + key.id + nonce + key.aead.encrypt(nonce, plaintext, None)

    def decrypt(self, blob: bytes) -> bytes:
        version = blob[:1]
        if version == VERSION:
            key = self._by_id.get(blob[1:HEADER_BYTES])
            if key is None:
                raise DecryptionError(
                    f"blob was encrypted with key {blob[1:HEADER_BYTES].hex()}, which is not "
                    "configured (HUB_SECRET_KEYS / HUB_SECRET_KEY_FILE)"
                )
            nonce = blob[HEADER_BYTES : HEADER_BYTES + NONCE_BYTES]
            try:
                return key.aead.decrypt(nonce, blob[HEADER_BYTES + NONCE_BYTES :], None)
            except InvalidTag as exc:
                raise DecryptionError("blob does not decrypt: it was altered") from exc
        if version == LEGACY:
            nonce = blob[1 : 1 + NONCE_BYTES]
            for key in self._keys:
                try:
                    return key.aead.decrypt(nonce, blob[1 + NONCE_BYTES :], None)
                except InvalidTag:
                    continue
            raise DecryptionError(
                "payload does not decrypt: none of the configured keys is the one that stored it"
            )
        raise DecryptionError("unknown payload format")

    def key_of(self, blob: bytes) -> str | None:
        """The hex id of the key a blob names (None: a version-1 blob, which names none)."""
        return blob[1:HEADER_BYTES].hex() if blob[:1] == VERSION else None

    def is_current(self, blob: bytes) -> bool:
        return blob[:HEADER_BYTES] == self.prefix

    def reencrypt(self, blob: bytes) -> bytes:
        """The same plaintext under the newest key (the blob itself when it already is)."""
        return blob if self.is_current(blob) else self.encrypt(self.decrypt(blob))


def configured_secrets(settings: Settings) -> list[str]:
    """The key secrets in order, newest first (see the module docstring)."""
    found: list[str] = []
    if settings.secret_keys is not None:
        found += [s.strip() for s in settings.secret_keys.get_secret_value().split(",")]
    if settings.secret_key_file is not None:
        try:
            lines = settings.secret_key_file.read_text().splitlines()
        except OSError as exc:
            raise SettingError("HUB_SECRET_KEY_FILE", f"cannot read it ({exc})") from exc
        found += [line.strip() for line in lines if not line.lstrip().startswith("#")]
    if settings.secret_key is not None:
        found.append(settings.secret_key.get_secret_value())
    found = [s for s in found if s]
    generated = settings.data_dir / "secret.key"
    if generated.exists() or not found:
        found.append(_generated_secret(generated))
    return found


def person_hasher(settings: Settings) -> PersonHasher:
    """The keyed hash of personal identifiers: HUB_PERSON_KEY, or `<data_dir>/person.key`."""
    if settings.person_key is not None:
        return PersonHasher(settings.person_key.get_secret_value())
    return PersonHasher(_generated_secret(settings.data_dir / "person.key"))


class PersonHasher:
    """HMAC-SHA256 under a dedicated key: the same person gives the same digest, and without
    the key a digest cannot be tested against a list of CPFs or phones."""

    def __init__(self, secret: str) -> None:
        self._key = hashlib.sha256(b"hub-person-index:" + secret.encode()).digest()

    def digest(self, kind: str, normalised: str) -> str:
        return hmac.new(self._key, f"{kind}:{normalised}".encode(), hashlib.sha256).hexdigest()


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
