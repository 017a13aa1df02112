"""whatsapp_cloud: Meta's Graph API stood in for by a loopback server with its answers and error
shapes (401 expired token, 429 with Retry-After, 5xx, 400 undeliverable)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import orjson
import pytest
from starlette.requests import Request
from starlette.responses import JSONResponse, Response

from hub.delivery.adapters import DeliveryRef, OutgoingRequest, Target, Verdict
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.kinds import Adapters
from tests.delivery.conftest import LOOPBACK, Seen, TargetServer

PHONE_ID, TOKEN = "106540352242922", "EAAG-token"


def graph_error(status: int, code: int, message: str, **headers: str) -> Response:
    body = {"error": {"message": message, "type": "OAuthException", "code": code,
                      "fbtrace_id": "AbCdEf"}}  # fmt: skip
    return JSONResponse(body, status, headers=headers)


class GraphStandIn(TargetServer):
    """`POST /v21.0/{phone_number_id}/messages` with a bearer token, as Meta answers it."""

    def __init__(self) -> None:
        super().__init__()
        self.errors: list[Response] = []

    async def _handle(self, request: Request) -> Response:
        body = await request.body()
        self.seen.append(Seen(request.method, request.url.path, dict(request.headers), body))
        if request.url.path != f"/v21.0/{PHONE_ID}/messages":
            return graph_error(400, 100, "Unsupported post request.")
        if request.headers.get("authorization") != f"Bearer {TOKEN}":
            return graph_error(401, 190, "Error validating access token: Session has expired")
        if self.errors:
            return self.errors.pop(0)
        data = orjson.loads(body)
        if data.get("messaging_product") != "whatsapp" or data.get("type") not in data:
            return graph_error(400, 100, "Invalid parameter")
        return JSONResponse(
            {
                "messaging_product": "whatsapp",
                "contacts": [{"input": data["to"], "wa_id": data["to"]}],
                "messages": [{"id": "wamid.HBgLNTUxMTkxMjM0NTY3OBUCABEYEjQ"}],
            }
        )


@pytest.fixture
def graph() -> Iterator[GraphStandIn]:
    server = GraphStandIn().start()
    yield server
    server.stop()


@pytest.fixture
def adapters() -> Iterator[Adapters]:
    pool = Adapters(egress=LOOPBACK)  # Meta stands in on 127.0.0.1
    yield pool
    pool.close()


def send(adapters: Adapters, graph: GraphStandIn, body: Any, monkeypatch: pytest.MonkeyPatch,
         token: str = TOKEN) -> Any:  # fmt: skip
    monkeypatch.setenv("GRAPH_URL", graph.url)
    monkeypatch.setenv("CLINIC_1_WA_PHONE_ID", PHONE_ID)
    monkeypatch.setenv("CLINIC_1_WA_TOKEN", token)
    config = EndpointConfig.model_validate(
        {
            "kind": "whatsapp_cloud",
            "url": "env:GRAPH_URL",
            "phone_number_id": "env:{TENANT}_WA_PHONE_ID",
            "token": "env:{TENANT}_WA_TOKEN",
        }
    )
    target = Target("meta", config, "clinic-1")
    return adapters.for_kind(config.kind).send(
        OutgoingRequest(body=body), target, DeliveryRef("dlv_01TEST", 1, "corr-7")
    )


def test_a_text_message_goes_to_the_graph_api_in_its_shape(
    graph: GraphStandIn, adapters: Adapters, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = send(adapters, graph, {"to": "5511912345678", "text": "Olá!"}, monkeypatch)
    assert outcome.verdict == Verdict.DELIVERED and "wamid." in outcome.excerpt
    sent = graph.seen[0].json()
    assert sent == {
        "messaging_product": "whatsapp",
        "recipient_type": "individual",
        "to": "5511912345678",
        "type": "text",
        "text": {"body": "Olá!"},
    }
    assert graph.seen[0].headers["x-correlation-id"] == "corr-7"


def test_a_template_message_names_its_language(
    graph: GraphStandIn, adapters: Adapters, monkeypatch: pytest.MonkeyPatch
) -> None:
    body = {"to": "5511912345678", "template": {"name": "lembrete_consulta", "components": [
        {"type": "body", "parameters": [{"type": "text", "text": "amanhã 10h"}]}]}}  # fmt: skip
    assert send(adapters, graph, body, monkeypatch).verdict == Verdict.DELIVERED
    template = graph.seen[0].json()["template"]
    assert template["name"] == "lembrete_consulta" and template["language"] == {"code": "pt_BR"}
    assert template["components"][0]["parameters"][0]["text"] == "amanhã 10h"


@pytest.mark.parametrize(
    ("reply", "verdict", "error_class", "retry_after"),
    [
        (graph_error(429, 130429, "Rate limit hit", **{"Retry-After": "7"}), "retry",
         "whatsapp_throttled", 7.0),
        (graph_error(503, 2, "Service temporarily unavailable"), "retry", "http_503", None),
        (graph_error(400, 131026, "Message undeliverable"), "dead", "whatsapp_rejected", None),
        (graph_error(400, 80007, "Rate limit issues"), "retry", "whatsapp_throttled", None),
    ],
)  # fmt: skip
def test_metas_errors_are_classified_by_status_and_code(
    graph: GraphStandIn,
    adapters: Adapters,
    monkeypatch: pytest.MonkeyPatch,
    reply: Response,
    verdict: str,
    error_class: str,
    retry_after: float | None,
) -> None:
    graph.errors.append(reply)
    outcome = send(adapters, graph, {"to": "5511912345678", "text": "Oi"}, monkeypatch)
    assert (outcome.verdict, outcome.error_class) == (verdict, error_class)
    assert outcome.retry_after == retry_after


def test_an_expired_token_is_permanent_and_says_why(
    graph: GraphStandIn, adapters: Adapters, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = send(adapters, graph, {"to": "55", "text": "Oi"}, monkeypatch, token="old")
    assert (outcome.verdict, outcome.error_class) == (Verdict.DEAD, "whatsapp_auth")
    assert "code 190" in outcome.error and "expired" in outcome.error


def test_a_body_without_recipient_or_text_is_dead_before_sending(
    graph: GraphStandIn, adapters: Adapters, monkeypatch: pytest.MonkeyPatch
) -> None:
    outcome = send(adapters, graph, {"text": "Oi"}, monkeypatch)
    assert outcome.verdict == Verdict.DEAD and "to" in outcome.error
    outcome = send(adapters, graph, {"to": "55"}, monkeypatch)
    assert outcome.verdict == Verdict.DEAD and "text or template" in outcome.error
    assert graph.seen == []


def test_an_endpoint_without_phone_number_id_names_it() -> None:
    with pytest.raises(ValueError, match="whatsapp_cloud endpoint needs phone_number_id"):
        EndpointConfig.model_validate({"kind": "whatsapp_cloud", "token": "env:WA_TOKEN"})
