"""The console's routes, mounted by `hub.app` at /console."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount, Route

from hub.console import dead_letters, endpoints, events, overview, session

ROUTES: list[BaseRoute] = [
    Route("/", overview.overview, methods=["GET"]),
    Route("/sign-in", session.sign_in_form, methods=["GET"]),
    Route("/sign-in", session.sign_in, methods=["POST"]),
    Route("/sign-out", session.sign_out, methods=["POST"]),
    Route("/events", events.index, methods=["GET", "POST"]),
    Route("/events/{event_id}", events.show, methods=["GET"]),
    Route("/events/{event_id}/replay", events.replay, methods=["POST"]),
    Route("/dead-letters", dead_letters.index, methods=["GET"]),
    Route("/dead-letters/act", dead_letters.act, methods=["POST"]),
    Route("/dead-letters/progress", dead_letters.progress, methods=["GET"]),
    Route("/dead-letters/{dead_letter_id}", dead_letters.show, methods=["GET"]),
    Route("/endpoints", endpoints.index, methods=["GET"]),
    Route("/endpoints/{name}/close-circuit", endpoints.close_circuit, methods=["POST"]),
    Route("/endpoints/{name}/pause", endpoints.pause, methods=["POST"]),
    Route("/endpoints/{name}/resume", endpoints.resume, methods=["POST"]),
]

CONSOLE = Mount("/console", routes=ROUTES)
