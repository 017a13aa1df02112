"""The console's tests use the operations tests' rows, keys, target and worker context."""

from __future__ import annotations

import re

from starlette.testclient import TestClient

from tests.ops.conftest import client, ctx, keys, target, world  # noqa: F401


def csrf_of(page: str) -> str:
    found = re.search(r'name="csrf" value="([^"]+)"', page)
    assert found is not None, page[:500]
    return found.group(1)


def sign_in(web: TestClient, key: str) -> str:
    """Sign in through the form; the CSRF token of the signed-in session."""
    form = web.get("/console/sign-in")
    answer = web.post(
        "/console/sign-in",
        data={"csrf": csrf_of(form.text), "key": key, "next": "/console/events"},
        follow_redirects=False,
    )
    assert answer.status_code == 303, answer.text
    return csrf_of(web.get("/console/events").text)
