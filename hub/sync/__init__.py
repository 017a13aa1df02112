"""Sync jobs: scheduled pulls of what changed in a source system, stored like webhooks.

config.py    mappings/syncs.yaml: source, tenants, schedule, request, pagination, window, items
pull.py      the source API's pages (page number, cursor, Link header), each request retried
schedule.py  sync_jobs rows: apply, the sweeper's claim of due jobs, leases, a run's start/finish
run.py       one run: pages -> store_events (duplicates create nothing) -> high-water mark
status.py    each sync's last run for /status, /metrics, alerts and `hub sync list|history`

May import: hub.core, hub.ingress (events, sources, extractors), hub.delivery (retry policy),
hub.mapping.
"""
