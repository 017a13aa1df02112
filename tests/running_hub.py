"""`hub up` as a user runs it, in a directory of its own: start, read the banner, Ctrl-C.

Shared by the first-run tests (hub demo end to end, the README tutorial). The embedded default
(SQLite + embedded Redis) on a free port; `PATH` starts with this interpreter's bin directory, so
`hub` in a shell command is the hub under test.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

from hub.local.processes import descendants, free_port

BIN = str(Path(sys.executable).parent)


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:  # a zombie is gone for our purposes
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().split(") ", 1)[1][0] != "Z"
    except OSError:
        return False


def user_env(port: int) -> dict[str, str]:
    """A user's shell: no HUB_* settings but the port, our `hub` first on PATH."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["PATH"] = BIN + os.pathsep + env.get("PATH", "/usr/bin:/bin")
    env["HUB_PORT"] = str(port)
    env["HUB_DEMO_URL"] = f"http://127.0.0.1:{port}"
    env["HUB_LOG_FORMAT"] = "json"
    return env


class RunningHub:
    def __init__(self, cwd: Path, port: int | None = None) -> None:
        self.cwd = cwd
        self.port = port or free_port()
        self.env = user_env(self.port)
        self.process: subprocess.Popen[str] | None = None
        self.banner = ""
        self.tree: list[int] = []

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> RunningHub:
        self.log = self.cwd / "hub-up.log"
        with self.log.open("a") as log:
            self.process = subprocess.Popen(
                ["hub", "up"],
                cwd=self.cwd,
                env=self.env,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
            )
        assert self.process.stdout is not None
        lines: list[str] = []
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            line = self.process.stdout.readline()
            if not line:
                break
            lines.append(line)
            if "Ctrl-C stops everything" in line:
                self.banner = "".join(lines)
                self.tree = descendants(self.process.pid)
                return self
        self.process.kill()
        tail = self.log.read_text()[-3000:]
        raise AssertionError("hub up printed no banner:\n" + "".join(lines) + tail)

    def children(self) -> dict[str, int]:
        """The named children of the banner's `processes:` line (sink, web, worker-1, …)."""
        found = re.search(r"processes: (.*)", self.banner)
        assert found is not None, self.banner
        pairs = (part.rsplit(" ", 1) for part in found.group(1).split(", "))
        return {name: int(pid) for name, pid in pairs}

    def sink_url(self) -> str:
        found = re.search(r"demo sink \(not real systems\) at (http://[0-9.:]+)/", self.banner)
        assert found is not None, self.banner
        return found.group(1)

    def stop(self) -> int:
        """Ctrl-C, as in a terminal; the exit code."""
        if self.process is None:
            return 0
        self.process.send_signal(signal.SIGINT)
        try:
            self.process.communicate(timeout=30)
        finally:
            if self.process.poll() is None:
                self.process.kill()
        code = self.process.returncode
        self.process = None
        return code

    def run(self, command: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
        """A command in the user's shell, in the hub's directory."""
        return subprocess.run(
            ["bash", "-euo", "pipefail", "-c", command],
            cwd=self.cwd,
            env=self.env,
            capture_output=True,
            text=True,
            timeout=timeout,
        )
