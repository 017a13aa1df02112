"""The egress policy: deliveries reach public addresses, and loopback, link-local, private and
unique-local ones only where HUB_EGRESS_ALLOW opens them, judged on the address connected to.

No test here may open a connection outside 127.0.0.0/8 and ::1: an audit hook fails the test on
any such connect, since the refusal must come before the connect anyway.
"""

from __future__ import annotations

import ipaddress
import sys
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from aiosmtpd.controller import Controller

from hub.core.errors import EgressRefused, SettingError
from hub.core.settings import Settings
from hub.delivery.adapters import DeliveryRef, OutgoingRequest, Target, Verdict
from hub.delivery.egress import EgressPolicy, forbidden_reason
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.kinds import Adapters
from hub.local.processes import free_port
from tests.delivery.conftest import TargetServer

_GUARD = {"on": False, "outside": []}  # type: dict[str, Any]


def _audit(event: str, args: tuple[Any, ...]) -> None:
    if not _GUARD["on"] or event != "socket.connect":
        return
    address = args[1]
    if isinstance(address, tuple) and address:
        try:
            ip = ipaddress.ip_address(str(address[0]).split("%")[0])
        except ValueError:
            return
        if not ip.is_loopback:
            _GUARD["outside"].append(str(ip))
            raise ConnectionRefusedError(f"test guard: no connection to {ip} allowed")


sys.addaudithook(_audit)


@pytest.fixture(autouse=True)
def no_connection_outside_loopback() -> Iterator[None]:
    _GUARD["on"], _GUARD["outside"] = True, []
    yield
    _GUARD["on"] = False
    assert _GUARD["outside"] == [], f"a test connected outside loopback: {_GUARD['outside']}"


def table(names: dict[str, list[str]]) -> Any:
    """A resolver for the test: host -> addresses, as a rebinding DNS server would answer."""

    def resolve(host: str, _port: int) -> Sequence[str]:
        return names[host]

    return resolve


DNS = table(
    {
        "metadata.test": ["169.254.169.254"],
        "intranet.test": ["10.0.0.1"],
        "ula.test": ["fd00::1"],
        "split.test": ["93.184.216.34", "10.0.0.1"],
        "public.test": ["93.184.216.34"],
    }
)


@pytest.mark.parametrize(
    ("host", "reason"),
    [
        ("169.254.169.254", "link-local"),
        ("10.0.0.1", "private"),
        ("172.16.5.4", "private"),
        ("192.168.1.1", "private"),
        ("100.64.0.1", "private"),
        ("fd00::1", "unique-local"),
        ("fe80::1", "link-local"),
        ("127.0.0.1", "loopback"),
        ("::1", "loopback"),
        ("::ffff:10.0.0.1", "private"),
        ("0.0.0.0", "unspecified"),
        ("metadata.test", "link-local"),
        ("intranet.test", "private"),
        ("ula.test", "unique-local"),
    ],
)
def test_internal_addresses_are_refused_by_default(host: str, reason: str) -> None:
    policy = EgressPolicy(resolver=DNS)
    with pytest.raises(EgressRefused, match=reason):
        policy.allowed_addresses(host, 443)


def test_public_addresses_pass_and_a_split_answer_keeps_only_the_public_one() -> None:
    policy = EgressPolicy(resolver=DNS)
    assert policy.allowed_addresses("public.test", 443) == ["93.184.216.34"]
    assert policy.allowed_addresses("split.test", 443) == ["93.184.216.34"]
    assert forbidden_reason(ipaddress.ip_address("93.184.216.34")) is None


def test_hub_egress_allow_opens_networks_and_hosts() -> None:
    policy = EgressPolicy.from_setting(["10.0.0.0/8", "Metadata.Test"], resolver=DNS)
    assert policy.allowed_addresses("intranet.test", 80) == ["10.0.0.1"]
    assert policy.allowed_addresses("10.20.30.40", 80) == ["10.20.30.40"]
    assert policy.allowed_addresses("metadata.test", 80) == ["169.254.169.254"]
    with pytest.raises(EgressRefused):
        policy.allowed_addresses("ula.test", 80)


def test_a_bad_allow_entry_names_the_setting() -> None:
    with pytest.raises(SettingError, match="HUB_EGRESS_ALLOW"):
        EgressPolicy.from_setting(["10.0.0.0/8", "not a host!"])
    settings = Settings(egress_allow="127.0.0.1, crm.internal", _env_file=None)  # type: ignore[arg-type,call-arg]
    assert settings.egress_allow == ["127.0.0.1", "crm.internal"]


def _send(adapters: Adapters, config: EndpointConfig) -> Any:
    return adapters.for_kind(config.kind).send(
        OutgoingRequest(body={"to": "ana@example.com", "subject": "s", "text": "t"}),
        Target("crm", config, "clinic-1"),
        DeliveryRef("dlv_01EGRESS", 1),
    )


def test_a_delivery_to_loopback_is_refused_by_default_and_goes_through_once_allowed(
    target: TargetServer,
) -> None:
    config = EndpointConfig.model_validate({"kind": "webhook", "url": target.url + "/hook"})
    closed = Adapters(egress=EgressPolicy())
    try:
        refused = _send(closed, config)
    finally:
        closed.close()
    assert refused.verdict == Verdict.DEAD and refused.error_class == "egress_refused"
    assert "127.0.0.1 (loopback)" in (refused.error or "")
    assert target.seen == []

    opened = Adapters(egress=EgressPolicy.from_setting(["127.0.0.1"]))
    try:
        delivered = _send(opened, config)
    finally:
        opened.close()
    assert delivered.verdict == Verdict.DELIVERED
    assert [seen.path for seen in target.seen] == ["/hook"]


def test_a_webhook_to_a_name_that_resolves_inside_is_refused_before_any_connect() -> None:
    config = EndpointConfig.model_validate({"kind": "webhook", "url": "https://metadata.test/x"})
    adapters = Adapters(egress=EgressPolicy(resolver=DNS))
    try:
        outcome = _send(adapters, config)
    finally:
        adapters.close()
    assert outcome.verdict == Verdict.DEAD and outcome.error_class == "egress_refused"
    assert "metadata.test -> 169.254.169.254 (link-local)" in (outcome.error or "")


class _Sink:
    def __init__(self) -> None:
        self.messages: list[Any] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
        self.messages.append(envelope)
        return "250 OK"


def test_email_obeys_the_policy_too() -> None:
    sink = _Sink()
    port = free_port()
    controller = Controller(sink, hostname="127.0.0.1", port=port)
    controller.start()
    try:
        config = EndpointConfig.model_validate(
            {"kind": "email", "host": "127.0.0.1", "port": port, "from_addr": "hub@example.com"}
        )
        closed = Adapters(egress=EgressPolicy())
        refused = _send(closed, config)
        opened = Adapters(egress=EgressPolicy.from_setting(["127.0.0.0/8"]))
        delivered = _send(opened, config)
    finally:
        controller.stop()
    assert refused.verdict == Verdict.DEAD and refused.error_class == "egress_refused"
    assert delivered.verdict == Verdict.DELIVERED
    assert len(sink.messages) == 1
