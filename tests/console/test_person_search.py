"""Finding a person's events in the console through the erasure index (LGPD requests): the
identifier is posted, never put in a URL, and a tenant admin finds only its own tenant's."""

from __future__ import annotations

from typing import Any

import orjson
from starlette.testclient import TestClient

from hub.core.crypto import Cipher, person_hasher
from hub.core.settings import Settings
from hub.ingress.events import NewEvent, store_events
from hub.ingress.persons import PersonPaths
from tests.console.conftest import sign_in
from tests.delivery.conftest import World
from tests.ops.conftest import Keys

PATHS = PersonPaths({"cpf": ["$.patient.cpf"], "phone": ["$.patient.phone"]})


def _store(settings: Settings, world: World, external_id: str, patient: dict[str, str]) -> str:
    cipher = Cipher.from_settings(settings)
    payload = {"type": "lead.created", "patient": patient}
    event = NewEvent(
        tenant_id=world.tenant_id,
        source="site",
        external_id=external_id,
        event_type="lead.created",
        queue="default",
        payload=cipher.encrypt(orjson.dumps(payload)),
        sealed_headers=None,
        persons=PATHS.digests(payload, person_hasher(settings)),
    )
    (stored,) = store_events(world.engine, [event])
    return stored.event_id


def test_a_persons_events_are_found_by_cpf_or_phone_and_no_one_elses(
    client: TestClient, keys: Keys, world: World, settings: Settings
) -> None:
    ana = _store(settings, world, "lead-ana", {"cpf": "123.456.789-09", "phone": "11987654321"})
    bruno = _store(settings, world, "lead-bruno", {"cpf": "987.654.321-00", "phone": "21999990000"})
    csrf = sign_in(client, keys.operator)

    def find(web: TestClient, token: str, kind: str, value: str, **kw: object) -> Any:
        data = {"csrf": token, "person_kind": kind, "person": value}
        return web.post("/console/events", data=data, **kw)  # type: ignore[arg-type]

    by_cpf = find(client, csrf, "cpf", "12345678909")
    assert by_cpf.status_code == 200
    assert ana in by_cpf.text and bruno not in by_cpf.text
    assert "12345678909" not in str(by_cpf.url)  # posted, never in the URL
    by_phone = find(client, csrf, "phone", "(21) 99999-0000")
    assert bruno in by_phone.text and ana not in by_phone.text
    bad = find(client, csrf, "cpf", "123", headers={"Accept": "text/html"})
    assert bad.status_code == 400 and "11 digits" in bad.text
    forged = client.post("/console/events", data={"person_kind": "cpf", "person": "12345678909"})
    assert forged.status_code == 403

    other = TestClient(client.app)
    other_csrf = sign_in(other, keys.other_admin)  # another tenant's admin
    theirs = find(other, other_csrf, "cpf", "12345678909")
    assert theirs.status_code == 200 and ana not in theirs.text
