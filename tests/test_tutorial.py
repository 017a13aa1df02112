"""README's "Your first flow in 10 minutes", run as written on a fresh copy of mappings/.

Every ```bash block of that section runs, in order, in a shell in the directory where `hub up`
runs; a block that is just `hub up` restarts the hub (Ctrl-C, then `hub up`), as the reader does
in the first terminal. The only change to the text: the hub's port (`127.0.0.1:8000`) becomes
the test's free port.
"""

from __future__ import annotations

import json
import re
import shutil
import time
from pathlib import Path

import pytest
from running_hub import RunningHub, alive

ROOT = Path(__file__).resolve().parent.parent
SECTION = "## Your first flow in 10 minutes"


def tutorial_blocks(readme: str) -> list[str]:
    """The ```bash blocks of the tutorial section, in order."""
    start = readme.index(SECTION)
    end = readme.find("\n## ", start + len(SECTION))
    section = readme[start : end if end != -1 else len(readme)]
    return [m.group(1) for m in re.finditer(r"```bash\n(.*?)```", section, re.S)]


def test_the_readme_tutorial_has_the_promised_steps() -> None:
    blocks = tutorial_blocks((ROOT / "README.md").read_text())
    text = "\n".join(blocks)
    for step in (
        "mappings/sources.yaml",
        "mappings/endpoints.yaml",
        "mappings/rules/",
        "hub mappings check",
        "hub mappings test",
        "hub mappings apply",
        "curl -s -X POST",
        "hub sink --tail",
        "/status",
    ):
        assert step in text, step


@pytest.mark.slow
def test_the_tutorial_runs_as_written(tmp_path: Path) -> None:
    shutil.copytree(ROOT / "mappings", tmp_path / "mappings")
    hub = RunningHub(tmp_path).start()
    blocks = tutorial_blocks((ROOT / "README.md").read_text())
    outputs: list[str] = []
    trees: list[int] = list(hub.tree)
    try:
        for block in blocks:
            command = block.replace("127.0.0.1:8000", f"127.0.0.1:{hub.port}").strip()
            if command == "hub up":
                assert hub.stop() == 0
                hub.start()
                trees.extend(hub.tree)
                outputs.append(hub.banner)
                continue
            outputs.append(_run_until_settled(hub, command))
    finally:
        hub.stop()
    report = "\n---\n".join(outputs)

    assert "5 rules" in report and "OK" in report  # check
    assert "visit-scheduled" in report and "0 failed" in report  # test
    assert "applied: version" in report  # apply
    assert "cuidadores" in hub.banner  # the restarted hub points the new endpoint at the sink
    accepted = re.search(r'\{"event_id":"(evt_\w+)","status":"accepted"\}', report)
    assert accepted is not None, report
    assert '"code":"invalid_api_key"' in report  # the wrong key, with its JSON error code
    arrived = [line for line in report.splitlines() if "POST /cuidadores/shifts" in line]
    assert arrived and "[valid]" in arrived[0], report
    status = [line for line in report.splitlines() if line.startswith('{"attempts"')]
    assert status and json.loads(status[-1])["delivered"] >= 1, report
    assert not [pid for pid in trees if alive(pid)]


def _run_until_settled(hub: RunningHub, command: str) -> str:
    """Run a block; one that looks at deliveries is run again (up to ~15 s) until they show."""
    deadline = time.monotonic() + 15
    while True:
        result = hub.run(command)
        assert result.returncode == 0, f"$ {command}\n{result.stdout}{result.stderr}"
        waiting = ("hub sink --tail" in command and "[valid]" not in result.stdout) or (
            "/status" in command and '"delivered":0' in result.stdout.replace(" ", "")
        )
        if not waiting or time.monotonic() > deadline:
            return result.stdout + result.stderr
        time.sleep(0.5)
