"""Where an event enters: `POST /webhooks/{source}` until the 202, or a broker's queue.

route.py        the webhook handler: authenticate -> limit -> verify -> store -> enqueue -> respond
principals.py   the one API-key extractor and who a key names (ingest, admin, operator)
apikeys.py      keys: created, hashed, looked up (cached for ingest), revoked
sources.py      sources.yaml: who may send and how their events are recognised
applied.py      the sources `hub mappings apply` stored, reloaded when the config version moves
signatures.py   incoming schemes: Standard Webhooks, HMAC-SHA256, Stripe, token, Meta
meta.py         Meta's webhooks: the GET handshake, the whatsapp_cloud preset's event id and type
persons.py      declared personal identifiers, normalised and hashed for erasure by person
ratelimit.py    per tenant and source limits shared in Redis
events.py       the event store: exactly-once INSERT, batched enqueue of process_events
writer.py       the group-commit writer the web process stores through
consumer.py     `hub consume`: an amqp source's queue into events, ack after commit, poison to DLX
relay.py        the outbox relay the sweeper runs: events whose job never reached Redis

May import: hub.core.
"""
