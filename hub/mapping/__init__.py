"""The mapping engine: declarative rules in mappings/ that turn one event into deliveries.

paths.py        JSONPath compiled to plain lookups (jsonpath-ng only for real JSONPath)
functions.py    the registry of safe functions (phone_br, cpf, money, …)
expressions.py  value builders: paths, constants, templates, functions, each, defaults
conditions.py   exists / equals / in / matches / gt… / all / any / not
topics.py       event-type patterns: `*` one word, `#` zero or more
rules.py        pydantic models of a rule file
config.py       the whole mappings/ directory, every problem reported at once
engine.py       match an event and build its requests
apply.py        write the config to the database with versions; Redis version key
live.py         the applied mappings, cached per process, reloaded on a new version
boot.py         apply ./mappings when `hub up` starts
examples.py     `hub mappings test`: the examples in each rule file
routing.py      process_events: each event matched, its deliveries created and enqueued
simulate.py     POST /admin/simulate: what an event would send, nothing stored

May import: hub.core, hub.ingress (sources), hub.delivery (endpoints).
"""
