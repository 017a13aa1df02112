"""Load generators: `wrk` with a Lua script when it is installed, else a built-in asyncio client.

Both send the same request (a fixed, signed ~1 KB body) with a unique `Idempotency-Key` per
request, over keep-alive connections, for a fixed duration; both report the status counts and
latency percentiles. The built-in one can also pace its requests (`rate`: a steady arrival
rate, request n sent at start + n/rate, not a burst); it runs in its own process so it does not
share the server's interpreter.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit


@dataclass
class LoadResult:
    tool: str
    duration: float
    statuses: dict[int, int]
    errors: int
    p50_ms: float
    p95_ms: float
    p99_ms: float
    sent_keys: list[str] = field(default_factory=list)  # built-in generator only

    @property
    def requests(self) -> int:
        return sum(self.statuses.values())

    def rate(self, *codes: int) -> float:
        count = sum(n for code, n in self.statuses.items() if not codes or code in codes)
        return count / self.duration if self.duration else 0.0


def run_load(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration: float,
    prefer_wrk: bool = True,
    total: int | None = None,
    rate: float | None = None,
) -> LoadResult:
    """Load for `duration` seconds (or until `total` requests), as fast as the server answers
    or paced at `rate` requests per second; `total` and `rate` need the built-in client."""
    if prefer_wrk and total is None and rate is None and shutil.which("wrk"):
        return _run_wrk(url, body, headers, concurrency=concurrency, duration=duration)
    return _run_builtin(
        url, body, headers, concurrency=concurrency, duration=duration, total=total, rate=rate
    )


# -- wrk -------------------------------------------------------------------------------------

_LUA = r"""
local counter = 0
local threads = {}
local prefix = ""
setup = function(thread)
  table.insert(threads, thread)
  thread:set("id", #threads)
end
init = function(args)
  statuses = {}
  prefix = "bench-" .. args[1] .. "-" .. id .. "-"
end
request = function()
  counter = counter + 1
  wrk.headers["Idempotency-Key"] = prefix .. counter
  return wrk.format("POST", nil, nil, BODY)
end
response = function(status, headers, body)
  statuses[status] = (statuses[status] or 0) + 1
end
done = function(summary, latency, requests)
  local merged = {}
  for _, t in ipairs(threads) do
    local s = t:get("statuses")
    for code, n in pairs(s) do merged[code] = (merged[code] or 0) + n end
  end
  local parts = {}
  for code, n in pairs(merged) do table.insert(parts, string.format('"%d": %d', code, n)) end
  local errs = summary.errors.connect + summary.errors.read + summary.errors.write
    + summary.errors.timeout
  io.write(string.format(
    'WRKJSON {"statuses": {%s}, "errors": %d, "duration_us": %d, '
    .. '"p50_us": %d, "p95_us": %d, "p99_us": %d}\n',
    table.concat(parts, ", "), errs, summary.duration,
    latency:percentile(50), latency:percentile(95), latency:percentile(99)))
end
"""


def _lua_string(data: bytes) -> str:
    return '"' + "".join(f"\\{b}" for b in data) + '"'


def _run_wrk(
    url: str, body: bytes, headers: dict[str, str], *, concurrency: int, duration: float
) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        script = Path(tmp) / "hub.lua"
        header_lines = "".join(
            f"wrk.headers[{json.dumps(k)}] = {json.dumps(v)}\n" for k, v in headers.items()
        )
        script.write_text(f"BODY = {_lua_string(body)}\n{header_lines}wrk.method = 'POST'\n{_LUA}")
        threads = max(1, min(2, concurrency))
        run_id = uuid.uuid4().hex[:8]
        proc = subprocess.run(
            ["wrk", f"-t{threads}", f"-c{concurrency}", f"-d{max(1, round(duration))}s",
             "--latency", "-s", str(script), url, "--", run_id],
            capture_output=True, text=True, timeout=duration + 60, check=False,
        )  # fmt: skip
    line = next((ln for ln in proc.stdout.splitlines() if ln.startswith("WRKJSON ")), None)
    if line is None:
        raise RuntimeError(f"wrk failed: {proc.stderr.strip() or proc.stdout.strip()}")
    data = json.loads(line[len("WRKJSON ") :])
    return LoadResult(
        tool="wrk",
        duration=data["duration_us"] / 1e6,
        statuses={int(k): v for k, v in data["statuses"].items()},
        errors=data["errors"],
        p50_ms=data["p50_us"] / 1000,
        p95_ms=data["p95_us"] / 1000,
        p99_ms=data["p99_us"] / 1000,
    )


# -- built-in asyncio client -----------------------------------------------------------------


async def _connection(
    host: str,
    port: int,
    head: bytes,
    body: bytes,
    deadline: float,
    out: dict[str, list],
    budget: list[int],
    pace: Pace | None = None,
) -> None:
    try:
        reader, writer = await asyncio.open_connection(host, port)
    except OSError:
        out["errors"].append(1)
        return
    counter = 0
    tag = uuid.uuid4().hex[:12]
    try:
        while time.perf_counter() < deadline and budget[0] != 0:
            budget[0] -= 1
            counter += 1
            if pace is not None:
                await pace.wait()
            key = f"bench-{tag}-{counter}"
            request = head + f"Idempotency-Key: {key}\r\n\r\n".encode() + body
            started = time.perf_counter()
            writer.write(request)
            status_line = await reader.readline()
            length = 0
            while True:
                line = await reader.readline()
                if line in (b"\r\n", b""):
                    break
                if line[:15].lower() == b"content-length:":
                    length = int(line[15:])
            if length:
                await reader.readexactly(length)
            if not status_line:
                out["errors"].append(1)
                return
            out["latencies"].append(time.perf_counter() - started)
            out["statuses"].append(int(status_line.split()[1]))
            out["keys"].append(key)
    except (OSError, asyncio.IncompleteReadError, ValueError, IndexError):
        out["errors"].append(1)
    finally:
        writer.close()


class Pace:
    """A steady arrival rate shared by every connection: the n-th request starts at
    start + n / rate (a connection that falls behind sends at once, it never bunches up)."""

    def __init__(self, rate: float) -> None:
        self.interval = 1.0 / rate
        self.start = time.perf_counter()
        self.sent = 0

    async def wait(self) -> None:
        at = self.start + self.sent * self.interval
        self.sent += 1
        delay = at - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)


def _builtin_main(
    url: str,
    body: bytes,
    headers: dict[str, str],
    concurrency: int,
    duration: float,
    path: str,
    total: int | None = None,
    rate: float | None = None,
) -> None:
    parts = urlsplit(url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    target = parts.path + (f"?{parts.query}" if parts.query else "")
    head = (
        f"POST {target} HTTP/1.1\r\nHost: {host}:{port}\r\nContent-Length: {len(body)}\r\n"
        + "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    ).encode()
    out: dict[str, list] = {"latencies": [], "statuses": [], "errors": [], "keys": []}
    budget = [-1 if total is None else total]  # requests left to send; -1: no limit

    async def main() -> float:
        started = time.perf_counter()
        deadline = started + duration
        pace = Pace(rate) if rate else None
        await asyncio.gather(
            *(
                _connection(host, port, head, body, deadline, out, budget, pace)
                for _ in range(concurrency)
            )
        )
        return time.perf_counter() - started

    try:
        import uvloop

        uvloop.install()
    except ImportError:
        pass
    elapsed = asyncio.run(main())
    Path(path).write_text(json.dumps({"elapsed": elapsed, **out}))


def _run_builtin(
    url: str,
    body: bytes,
    headers: dict[str, str],
    *,
    concurrency: int,
    duration: float,
    total: int | None = None,
    rate: float | None = None,
) -> LoadResult:
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "result.json")
        config = os.path.join(tmp, "config.json")
        Path(config).write_text(
            json.dumps(
                {"url": url, "body": body.decode(), "headers": headers,
                 "concurrency": concurrency, "duration": duration, "path": path,
                 "total": total, "rate": rate}
            )
        )  # fmt: skip
        subprocess.run(
            [sys.executable, "-m", "hub.bench.loadgen", config],
            timeout=duration + 60,
            check=True,
        )
        data = json.loads(Path(path).read_text())
    latencies = sorted(data["latencies"])
    statuses: dict[int, int] = {}
    for code in data["statuses"]:
        statuses[code] = statuses.get(code, 0) + 1

    def pct(p: float) -> float:
        if not latencies:
            return 0.0
        return latencies[min(len(latencies) - 1, int(len(latencies) * p))] * 1000

    return LoadResult(
        tool="built-in",
        duration=data["elapsed"],
        statuses=statuses,
        errors=len(data["errors"]),
        p50_ms=pct(0.50),
        p95_ms=pct(0.95),
        p99_ms=pct(0.99),
        sent_keys=data["keys"],
    )


if __name__ == "__main__":
    cfg = json.loads(Path(sys.argv[1]).read_text())
    _builtin_main(
        cfg["url"], cfg["body"].encode(), cfg["headers"], cfg["concurrency"], cfg["duration"],
        cfg["path"], cfg.get("total"), cfg.get("rate"),
    )  # fmt: skip
