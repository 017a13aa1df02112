from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import SecretStr

from hub.core.crypto import Cipher, DecryptionError
from hub.core.settings import Settings


def test_round_trip_and_ciphertext_hides_the_plaintext() -> None:
    cipher = Cipher("k1")
    blob = cipher.encrypt(b'{"phone": "11912345678"}')
    assert b"11912345678" not in blob
    assert cipher.decrypt(blob) == b'{"phone": "11912345678"}'
    assert cipher.encrypt(b"x") != cipher.encrypt(b"x")  # fresh nonce each time


def test_another_key_cannot_decrypt() -> None:
    with pytest.raises(DecryptionError):
        Cipher("k2").decrypt(Cipher("k1").encrypt(b"secret"))


def test_a_generated_key_is_kept_in_the_data_dir(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, _env_file=None)  # type: ignore[call-arg]
    blob = Cipher.from_settings(settings).encrypt(b"payload")
    assert (tmp_path / "secret.key").stat().st_mode & 0o777 == 0o600
    assert Cipher.from_settings(settings).decrypt(blob) == b"payload"


def test_the_setting_wins_over_the_file(tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path, secret_key=SecretStr("configured"), _env_file=None)  # type: ignore[call-arg]
    assert Cipher("configured").decrypt(Cipher.from_settings(settings).encrypt(b"a")) == b"a"
    assert not (tmp_path / "secret.key").exists()


def test_each_blob_names_its_key_and_an_older_key_still_decrypts() -> None:
    old, new = Cipher("old"), Cipher("new", "old")
    blob = old.encrypt(b"a")
    assert old.key_of(blob) == old.key_id and not new.is_current(blob)
    assert new.decrypt(blob) == b"a"
    rotated = new.reencrypt(blob)
    assert new.key_of(rotated) == Cipher("new").key_id and new.is_current(rotated)
    assert Cipher("new").decrypt(rotated) == b"a"
    with pytest.raises(DecryptionError, match="not configured"):
        Cipher("new").decrypt(blob)


def test_version_1_blobs_of_the_single_key_still_decrypt() -> None:
    import hashlib
    import os

    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    nonce = os.urandom(12)
    legacy = b"\x01" + nonce + AESGCM(hashlib.sha256(b"k1").digest()).encrypt(nonce, b"p", None)
    assert Cipher("k2", "k1").decrypt(legacy) == b"p"
    assert Cipher("k2", "k1").key_of(legacy) is None
    with pytest.raises(DecryptionError):
        Cipher("k2").decrypt(legacy)


def test_keys_come_newest_first_from_the_list_the_file_then_the_single_key(tmp_path: Path) -> None:
    keyfile = tmp_path / "keys"
    keyfile.write_text("# newest first\nfile-1\nfile-2\n")
    settings = Settings(
        data_dir=tmp_path,
        secret_keys=SecretStr("a, b"),
        secret_key_file=keyfile,
        secret_key=SecretStr("single"),
        _env_file=None,  # type: ignore[call-arg]
    )
    cipher = Cipher.from_settings(settings)
    expected = [Cipher(k).key_id for k in ("a", "b", "file-1", "file-2", "single")]
    assert cipher.key_ids == expected
    assert not (tmp_path / "secret.key").exists()
