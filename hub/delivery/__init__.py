"""Getting each delivery to its target.

endpoints.py    endpoints.yaml: where deliveries go, resolved per tenant
registry.py     the applied endpoints, cached per process, reloaded on a new config version
adapters.py     webhook (httpx, signed) | zapi | email, and what each outcome means
whatsapp_cloud.py  Meta's Graph API messages (text, template), its error codes classified
amqp.py         RabbitMQ: seed 004's envelope, publisher confirms, one connection per process
kinds.py        one adapter per endpoint kind for a process
retry.py        retry policy as data and the pure next_delay
breaker.py      the circuit breaker: a few Redis keys per endpoint
throttle.py     the outgoing rate limit per endpoint
lanes.py        each endpoint's sends on its own threads, at its own concurrency
jobs.py         the deliver job: a batch in chunks, each endpoint's group on its lane
runtime.py      per worker process: adapters, lanes, caches and the groups in flight
groups.py       an endpoint's group: lane room, leases, breaker and rate limit, sends
outcomes.py     each send's outcome: attempts, statuses, retries, dead letters, one log line
pauses.py       pausing an endpoint: its deliveries wait untried, released on resume
sweeps.py       due retries, expired leases and pending deliveries back on their queues

May import: hub.core.
"""
