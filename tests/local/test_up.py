"""`hub up`: the embedded process tree comes up, answers /health, stops cleanly, keeps its data."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

from hub.local.processes import free_port as _free_port

pytestmark = pytest.mark.slow


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def _embedded_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("HUB_")}
    env["HUB_LOG_FORMAT"] = "json"
    return env


def _start(cwd: Path, port: int) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "hub", "up", "--port", str(port)],
        cwd=cwd,
        env=_embedded_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_banner(proc: subprocess.Popen[str]) -> str:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line)
        if "Ctrl-C stops everything" in line:
            return "".join(lines)
    proc.kill()
    _, err = proc.communicate()
    raise AssertionError("hub up printed no banner:\n" + "".join(lines) + err)


def _stop(proc: subprocess.Popen[str]) -> str:
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    return err


def test_up_runs_the_tree_and_ctrl_c_stops_every_child(tmp_path: Path) -> None:
    port = _free_port()
    proc = _start(tmp_path, port)
    try:
        banner = _wait_banner(proc)
        health = httpx.get(f"http://127.0.0.1:{port}/health", timeout=5)
        assert health.status_code == 200
        assert health.json()["checks"]["database"]["status"] == "ok"
        assert health.json()["checks"]["redis"]["status"] == "ok"
        pids = [int(p) for p in re.findall(r"(?:web|worker-\d|sweeper) (\d+)", banner)]
        assert len(pids) == 3
        assert all(_alive(pid) for pid in pids)
        key = re.search(r"(hub_[0-9a-f]{8}_\S+)", banner)
        assert key is not None
        assert f"X-API-Key: {key.group(1)}" in banner  # a ready-to-paste curl line
    finally:
        err = _stop(proc)
    assert proc.returncode == 0, err
    assert "hub: stopped" in err
    assert not any(_alive(pid) for pid in pids)
    assert (tmp_path / ".hub" / "hub.db").exists()
    assert not (tmp_path / ".hub" / "redis.sock").exists()

    # a second `hub up` reuses the same data and the same demo key
    proc = _start(tmp_path, port)
    try:
        second = _wait_banner(proc)
    finally:
        _stop(proc)
    assert key.group(1) in second


def test_up_refuses_a_port_in_use(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        result = subprocess.run(
            [sys.executable, "-m", "hub", "up", "--port", str(port)],
            cwd=tmp_path,
            env=_embedded_env(),
            capture_output=True,
            text=True,
            timeout=60,
        )
    assert result.returncode == 2
    assert result.stderr.strip() == (
        f"hub: error: HUB_PORT: 127.0.0.1:{port} is in use; choose another with --port"
    )
    assert not (tmp_path / ".hub" / "hub.db").exists()
