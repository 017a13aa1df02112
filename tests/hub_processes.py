"""`python -m hub …` processes a test starts against its own settings, all ended with the test.

Each child gets the test's database, Redis and data dir (so the same secret key as the test's
cipher), warnings-only logs, and any extra `HUB_*` variables; its stderr is kept for the test to
read. `close()` kills what is still running: a test ends only the processes it started.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from hub.core.settings import Settings


class HubProcesses:
    def __init__(self, settings: Settings, cwd: Path) -> None:
        self.settings = settings
        self.cwd = cwd
        self.started: list[subprocess.Popen[bytes]] = []

    def start(
        self,
        *args: str,
        database_url: str | None = None,
        redis_url: str | None = None,
        **env: str,
    ) -> subprocess.Popen[bytes]:
        """`hub ARGS…` with the test's services (or the given URLs, e.g. through a proxy)."""
        settings = self.settings
        environ = {
            **os.environ,
            "HUB_DATABASE_URL": database_url or settings.effective_database_url,
            "HUB_REDIS_URL": redis_url or settings.redis_url or "",
            "HUB_DATA_DIR": str(settings.data_dir),
            "HUB_LOG_LEVEL": "WARNING",
            **env,
        }
        proc = subprocess.Popen(
            [sys.executable, "-m", "hub", *args],
            cwd=self.cwd,
            env=environ,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        self.started.append(proc)
        return proc

    def close(self) -> None:
        for proc in self.started:
            if proc.poll() is None:
                proc.kill()
            proc.wait(10)
            if proc.stderr:
                proc.stderr.close()
