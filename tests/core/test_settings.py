from __future__ import annotations

from pathlib import Path

import pytest

from hub.cli.group import load_settings
from hub.core.errors import SettingError
from hub.core.settings import Settings


def test_defaults_select_the_embedded_services(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    for name in ("HUB_DATABASE_URL", "HUB_REDIS_URL", "HUB_DATA_DIR"):
        monkeypatch.delenv(name, raising=False)
    settings = Settings()
    assert settings.embedded_database and settings.embedded_redis
    assert settings.effective_database_url == f"sqlite:///{tmp_path / '.hub' / 'hub.db'}"
    assert settings.body_limit == 1024 * 1024


def test_env_and_dotenv_are_read_with_the_hub_prefix(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv("HUB_REDIS_URL", raising=False)
    (tmp_path / ".env").write_text("HUB_REDIS_URL=redis://127.0.0.1:6379/3\nHUB_BODY_LIMIT=2048\n")
    monkeypatch.setenv("HUB_SECRET_KEY", "s3cret")
    settings = Settings()
    assert settings.redis_url == "redis://127.0.0.1:6379/3"
    assert settings.body_limit == 2048
    assert settings.secret_key is not None and settings.secret_key.get_secret_value() == "s3cret"
    assert "s3cret" not in repr(settings)


def test_an_empty_url_means_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_DATABASE_URL", "  ")
    assert Settings(_env_file=None).embedded_database  # type: ignore[call-arg]


def test_a_bad_value_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HUB_BODY_LIMIT", "lots")
    with pytest.raises(SettingError) as info:
        load_settings()
    assert info.value.setting == "HUB_BODY_LIMIT"
