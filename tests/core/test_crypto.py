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
