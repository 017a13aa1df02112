"""One adapter per endpoint kind in a process; the Calendar's (httpx, authlib) is loaded by the
first calendar send only, so a worker that sends none does not carry it."""

from __future__ import annotations

import subprocess
import sys

from hub.core.models import EndpointKind
from hub.delivery.kinds import Adapters


def test_every_kind_has_its_adapter_and_the_same_one_each_time() -> None:
    adapters = Adapters()
    try:
        for kind in EndpointKind:
            assert adapters.for_kind(kind) is adapters.for_kind(kind), kind
        assert type(adapters.for_kind(EndpointKind.GOOGLE_CALENDAR)).__name__ == "CalendarAdapter"
    finally:
        adapters.close()


def test_the_calendar_adapter_and_httpx_load_with_the_first_calendar_send_only() -> None:
    code = (
        "import sys\n"
        "import workers.worker, hub.delivery.jobs\n"
        "from hub.core.models import EndpointKind\n"
        "from hub.delivery.kinds import Adapters\n"
        "adapters = Adapters()\n"
        "names = ('httpx', 'authlib', 'hub.delivery.calendar')\n"
        "adapters.for_kind(EndpointKind.WEBHOOK)\n"
        "before = sorted(m for m in names if m in sys.modules)\n"
        "adapters.for_kind(EndpointKind.GOOGLE_CALENDAR)\n"
        "after = sorted(m for m in names if m in sys.modules)\n"
        "adapters.close()\n"
        "print(before, after)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert done.stdout.strip() == "[] ['authlib', 'httpx', 'hub.delivery.calendar']", done.stderr
