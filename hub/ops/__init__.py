"""What operators use to watch and repair: every route and command beside the event's journey.

status.py       /status and `hub status`: queues, workers, states, backlogs, circuits, syncs, alerts
alerts.py       /status alerts posted to HUB_ALERT_ENDPOINT, once each
health.py       /health, bounded in time
replay.py       dead letters and events sent again (the CLI, the admin API and RQ jobs share it)
purge.py        payloads and rows older than a cut-off removed in batches
admin.py        the /admin/* JSON API
tenants.py      tenants as the operator's object: create, list, show, (de)activate, rename, limits
tenant_routes.py /admin/tenants: the same verbs for the operator over HTTP
offboarding.py  `hub tenants delete --erase`: a tenant's rows erased in resumable batches
params.py       what the admin API accepts: pydantic models, every parameter bounded
openapi.py      GET /openapi.json, built from the routes' models
rotation.py     `hub rotate-keys`: every blob re-encrypted under the newest key, resumable
erasure.py      erasure by person and export (LGPD art. 18), `POST /admin/erasures`
auditlog.py     `GET /admin/audit`
dashboard.py    rq-dashboard mounted at /rq behind the operator key

May import: hub.core, hub.ingress, hub.delivery, hub.mapping, hub.sync.
"""
