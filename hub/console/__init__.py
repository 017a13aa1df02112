"""The hub console: server-rendered pages at /console where an operator (or a tenant's admin)
follows each event's journey and replays what failed. Jinja2 templates in `templates/`, no
front-end build; every action goes through the same functions as the CLI and the admin API.

session.py      sign-in with a key, the signed session cookie, CSRF on every form, sign-out
templates.py    the Jinja2 environment, its filters, pages and error pages
charts.py       events and deliveries over time, counted in SQL, drawn as inline SVG
overview.py     the /status snapshot drawn: charts, endpoints, queues, dead letters, alerts
events.py       event search (keyset paged) and an event's page: rules, deliveries, attempts
dead_letters.py dead letters: filters, replay or discard many with a confirmation, progress
endpoints.py    endpoints: recent attempts, close a circuit, pause and resume deliveries
routes.py       the routes, mounted by hub.app at /console

May import: hub.core, hub.ingress, hub.delivery, hub.mapping, hub.ops.
"""
