"""The small core every stage stands on: what hub *is*, with no stage's behaviour.

settings.py     the one Settings class (HUB_* variables, .env)
errors.py       the one error tree (HTTP status, code and exit code per class)
responses.py    that tree as the JSON error body of HTTP answers
ids.py units.py public ids (evt_, dlv_, dlq_), durations, sizes and rates
db.py schema.py the engine, migrations (alembic) and their checks
clock.py        one clock per installation: the database's, for leases, due times and cut-offs
models.py       the tables, their statuses as enums
queues.py       queue names, job names, Redis keys and the Redis connection, defined once
context.py      the Protocols jobs and sweep tasks receive (what workers/ passes in)
crypto.py       encryption at rest under rotating keys, the keyed hash of personal identifiers;
                signing.py: Standard Webhooks signatures made
secrets.py      tenant secrets in the database (`secret:NAME`) and each process's cache of them
audit.py        the audit log of credential and admin operations
logs.py         structured JSON logs without personal data; metrics.py: Prometheus
yamlfile.py     YAML with line numbers; envrefs.py: `env:` and `secret:` references; tenants.py:
                slugs, lookup, settings (time zone, locale)
dead_letters.py the dead-letter registry: opened by mapping and delivery, read by ops
outages.py      living through a Redis or database outage: capped backoff, one log line per change
inflight.py     which ids RQ's jobs carry (queued, started by a live worker): the evidence
                the sweeper re-enqueues on; workers' pulses
leader.py       a leader lock in Redis with expiry and fencing (one working sweeper)
amqp.py         RabbitMQ connections (pika): timeouts, heartbeats, reconnection backoff

May import: nothing else of hub.
"""
