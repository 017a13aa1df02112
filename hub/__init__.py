"""hub: webhooks in, durable events, declarative mappings, reliable deliveries out.

The packages follow an event's journey; each may import only the packages listed before it
(`tests/test_layout.py` checks this on every run). See docs/architecture.md.

    core/       settings, errors, ids, db, models, queues, crypto, logs, metrics  (imports nothing)
    ingress/    POST /webhooks/{source}: keys, sources, signatures, limits, event store, relay
    delivery/   endpoints, adapters, retry policy, breaker, throttle, the deliver job, leases
    mapping/    rules, engine, apply, process_events (events -> deliveries), simulate
    sync/       syncs.yaml: scheduled pulls of a source's API, stored as events like webhooks
    ops/        status, alerts, replay, purge, admin API, tenants, OpenAPI, dashboard, health
    console/    /console: the operator's web pages (events, dead letters, endpoints, overview)
    app.py      the Starlette app assembled from the packages' routes
    local/      one machine: `hub up`, embedded Redis, child processes, demo mode, sink, `hub demo`
    cli/ bench/ the `hub` command and `hub bench`, on top of everything
"""
