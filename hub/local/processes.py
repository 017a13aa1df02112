"""Child processes of one tree (`hub up`, `hub bench`): start, watch, stop in reverse order."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

import click
import httpx

from hub.core.errors import HubError

GRACE_SECONDS = 10.0
HUB = [sys.executable, "-m", "hub"]


def free_port(host: str = "127.0.0.1", avoid: Iterable[int] = ()) -> int:
    """A TCP port nothing listens on right now (the kernel's pick), other than `avoid`: ports
    picked for this tree but not bound yet, which the kernel may hand out again."""
    taken = set(avoid)
    while True:
        with socket.socket() as sock:
            sock.bind((host, 0))
            port = int(sock.getsockname()[1])
        if port not in taken:
            return port


def die_with_parent() -> None:
    """In a child before exec (Linux): get SIGTERM when the parent dies, even by SIGKILL, so a
    killed `hub up` leaves no orphans. Elsewhere a no-op."""
    if not sys.platform.startswith("linux"):
        return
    import ctypes

    pr_set_pdeathsig = 1
    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(pr_set_pdeathsig, signal.SIGTERM)


@dataclass
class Child:
    name: str
    args: list[str]
    process: subprocess.Popen[bytes] | None = field(default=None)

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process is not None else None

    def start(self, env: Mapping[str, str], *, quiet: bool = False) -> Child:
        """Start in a session of its own, so a terminal's Ctrl-C reaches only the parent."""
        out = subprocess.DEVNULL if quiet else None
        self.process = subprocess.Popen(
            self.args,
            env=dict(env),
            stdin=subprocess.DEVNULL,
            stdout=out,
            stderr=out,
            start_new_session=True,
            preexec_fn=die_with_parent,
        )
        return self

    def exit_code(self) -> int | None:
        return None if self.process is None else self.process.poll()


def first_exited(children: Sequence[Child]) -> Child | None:
    return next((c for c in children if c.exit_code() is not None), None)


def wait_until(
    ready: Callable[[], bool], what: str, children: Sequence[Child], timeout: float = 30.0
) -> None:
    """Wait until `ready()`; HubError when a child exits, or "`what` within `timeout`s" when
    time runs out."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        dead = first_exited(children)
        if dead is not None:
            raise HubError(f"{dead.name} exited with code {dead.exit_code()}")
        if ready():
            return
        time.sleep(0.1)
    raise HubError(f"{what} within {timeout:.0f}s")


def wait_http_ok(url: str, children: Sequence[Child], timeout: float = 30.0) -> None:
    """Wait until `url` answers 200; HubError when a child exits or time runs out."""

    def answers() -> bool:
        try:
            return httpx.get(url, timeout=1.0).status_code == 200
        except httpx.HTTPError:
            return False

    wait_until(answers, f"{url} did not answer", children, timeout)


def stop_all(children: Sequence[Child], grace: float = GRACE_SECONDS) -> None:
    """SIGTERM each child (last started first), wait up to `grace`, then SIGKILL stragglers."""
    for child in reversed(children):
        if child.exit_code() is None and child.process is not None:
            child.process.send_signal(signal.SIGTERM)
    deadline = time.monotonic() + grace
    for child in reversed(children):
        if child.process is None:
            continue
        try:
            child.process.wait(max(0.0, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            click.echo(f"hub: {child.name} did not stop within {grace:.0f}s; killing it", err=True)
            child.process.kill()
            child.process.wait()


def peak_rss_mb(pid: int) -> float | None:
    """Peak resident memory (VmHWM) of a live process, in MB."""
    try:
        with open(f"/proc/{pid}/status") as status:
            for line in status:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1]) / 1024
    except OSError:
        return None
    return None


def cpu_seconds(pid: int) -> float | None:
    """CPU time (user + system) a live process has used so far, in seconds (Linux /proc)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            fields = stat.read().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def tree_cpu_seconds(pid: int) -> float:
    """CPU seconds used so far by `pid` and its live descendants."""
    return sum(cpu_seconds(one) or 0.0 for one in [pid, *descendants(pid)])


def descendants(pid: int) -> list[int]:
    """Every live descendant of `pid` (Linux /proc)."""
    out: list[int] = []
    todo = [pid]
    while todo:
        current = todo.pop()
        try:
            tasks = os.listdir(f"/proc/{current}/task")
        except OSError:
            continue
        for task in tasks:
            try:
                with open(f"/proc/{current}/task/{task}/children") as handle:
                    kids = [int(k) for k in handle.read().split()]
            except OSError:
                continue
            out.extend(kids)
            todo.extend(kids)
    return out
