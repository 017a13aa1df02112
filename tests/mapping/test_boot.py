"""`hub up` applies ./mappings before the children start; the bench reports a rate."""

from __future__ import annotations

from pathlib import Path

from redis import Redis
from sqlalchemy import Engine

from hub.bench.mapping import BODY, sample_payload, transforms_per_second
from hub.core.queues import CONFIG_VERSION_KEY
from hub.core.settings import Settings
from hub.local.up import BOOT_STEPS
from hub.mapping.boot import apply_at_boot


def test_the_boot_step_is_registered_and_summarises(
    settings: Settings, engine: Engine, redis: Redis
) -> None:
    assert ("mappings", apply_at_boot) in BOOT_STEPS
    first = apply_at_boot(settings, engine)
    assert first.startswith("4 rules, 8 endpoints, 7 sources, version ")
    version = first.rsplit(" ", 1)[1]
    assert redis.get(CONFIG_VERSION_KEY) == version.encode()
    assert (
        apply_at_boot(settings, engine)
        == f"4 rules, 8 endpoints, 7 sources, version {version}, unchanged"
    )


def test_without_a_mappings_directory_hub_up_still_starts(
    settings: Settings, engine: Engine, tmp_path: Path
) -> None:
    bare = settings.model_copy(update={"mappings_dir": tmp_path / "none"})
    assert apply_at_boot(bare, engine).startswith("none applied")


def test_the_bench_builds_the_ten_field_body_on_a_2kb_payload() -> None:
    assert len(BODY) == 10
    assert 2000 <= len(str(sample_payload())) <= 2600
    report = transforms_per_second(0.05)
    assert report["fields"] == 10 and report["payload_bytes"] == 2048
    assert report["transforms"] > 0 and report["per_second"] > 0
