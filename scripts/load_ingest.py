"""A quick ingest load test (not a test of the suite): `hub serve` + wrk with signed requests.

    HUB_DATABASE_URL=mysql+pymysql://root@127.0.0.1:3306/hub_bench \
    HUB_REDIS_URL=redis://127.0.0.1:6379/13 \
    .venv/bin/python scripts/load_ingest.py --connections 64 --duration 15

Every request is a distinct Standard Webhooks event signed with a per-tenant secret, so each one
is verified, stored (durable commit) and enqueued. Prints wrk's summary and the rows stored.
Needs `wrk` on PATH. Traffic goes to 127.0.0.1 only.
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import hmac
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

SOURCES = """\
sources:
  financeiro:
    queue: high
    signature: {scheme: standard-webhooks, secrets: ["env:{TENANT}_FIN_SECRET"]}
    event_type: {jsonpath: $.type}
    event_id: {header: webhook-id}
"""
SECRET = "whsec_" + base64.b64encode(b"load-test-secret-0123456789abcde").decode()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def lua_script(path: Path, count: int, run_id: str, api_key: str) -> None:
    """A wrk script cycling through `count` distinct signed requests read from a data file."""
    key = base64.b64decode(SECRET.removeprefix("whsec_"))
    now = int(time.time())
    data = path.with_suffix(".tsv")
    with data.open("w") as out:
        for i in range(count):
            msg_id = f"{run_id}-{i}"
            body = f'{{"type":"invoice.paid","id":"{msg_id}","amount":{i % 1000},"currency":"BRL"}}'
            mac = hmac.new(key, f"{msg_id}.{now}.{body}".encode(), hashlib.sha256).digest()
            out.write(f"{msg_id}\t{now}\tv1,{base64.b64encode(mac).decode()}\t{body}\n")
    path.write_text(
        f"""
local reqs = {{}}
function init(args)
  for line in io.lines("{data}") do
    local id, ts, sig, body = line:match("([^\t]+)\t([^\t]+)\t([^\t]+)\t(.*)")
    reqs[#reqs + 1] = wrk.format("POST", nil, {{
      ["X-API-Key"] = "{api_key}", ["Content-Type"] = "application/json",
      ["webhook-id"] = id, ["webhook-timestamp"] = ts, ["webhook-signature"] = sig}}, body)
  end
end
local n = 0
function request()
  n = n + 1
  return reqs[(n - 1) % #reqs + 1]
end
"""
    )


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("--connections", type=int, default=64)
    parser.add_argument("--duration", type=int, default=15)
    parser.add_argument("--threads", type=int, default=1, help="wrk threads")
    parser.add_argument("--workers", type=int, default=1, help="uvicorn worker processes")
    parser.add_argument("--requests", type=int, default=120_000, help="distinct signed requests")
    args = parser.parse_args()
    if not shutil.which("wrk"):
        print("wrk is not installed", file=sys.stderr)
        return 2
    hub = str(Path(sys.executable).parent / "hub")
    work = Path(tempfile.mkdtemp(prefix="hub-load-"))
    (work / "mappings").mkdir()
    (work / "mappings" / "sources.yaml").write_text(SOURCES)
    port = free_port()
    env = {
        **os.environ,
        "HUB_MAPPINGS_DIR": str(work / "mappings"),
        "HUB_DATA_DIR": str(work / ".hub"),
        "HUB_DEFAULT_RATE_LIMIT": "10000000/minute",
        "HUB_PORT": str(port),
        "HUB_LOG_LEVEL": "WARNING",
        "LOAD_FIN_SECRET": SECRET,
    }
    subprocess.run([hub, "migrate"], env=env, check=True, capture_output=True)
    created = subprocess.run(
        [hub, "keys", "create", "--tenant", "load", "--name", "load"],
        env=env,
        check=True,
        capture_output=True,
        text=True,
    )
    api_key = created.stdout.strip().splitlines()[-1]
    run_id = f"run{int(time.time())}"
    script = work / "load.lua"
    lua_script(script, args.requests, run_id, api_key)
    server = subprocess.Popen(
        [hub, "serve", "--workers", str(args.workers)], env=env, stderr=subprocess.DEVNULL
    )
    try:
        deadline = time.monotonic() + 20
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.2).close()
                break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.1)
        url = f"http://127.0.0.1:{port}/webhooks/financeiro"
        # warm-up: caches, pools, JIT of the Lua table
        subprocess.run(
            ["wrk", "-t1", "-c8", "-d2s", "-s", str(script), url],
            check=True,
            capture_output=True,
        )
        result = subprocess.run(
            [
                "wrk",
                f"-t{args.threads}",
                f"-c{args.connections}",
                f"-d{args.duration}s",
                "--latency",
                "-s",
                str(script),
                url,
            ],
            check=True,
            capture_output=True,
            text=True,
        )
        print(result.stdout)
    finally:
        server.terminate()
        server.wait(30)
    from sqlalchemy import create_engine, text

    engine = create_engine(os.environ.get("HUB_DATABASE_URL") or f"sqlite:///{work}/.hub/hub.db")
    with engine.connect() as conn:
        rows = conn.execute(
            text("SELECT status, COUNT(*) FROM integration_events GROUP BY status")
        ).all()
    print("events by status:", dict((s, int(n)) for s, n in rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
