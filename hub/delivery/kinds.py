"""The adapter of each endpoint kind, one set per process sharing its connections.

webhook, zapi, email     hub.delivery.adapters
whatsapp_cloud           hub.delivery.whatsapp_cloud
amqp                     hub.delivery.amqp (one broker connection and channel per process)
google_calendar          hub.delivery.calendar (needs the database and Redis)
"""

from __future__ import annotations

from redis import Redis
from sqlalchemy import Engine

from hub.core.models import EndpointKind
from hub.delivery.adapters import Adapter, ClientPool, EmailAdapter, WebhookAdapter, ZapiAdapter
from hub.delivery.amqp import AmqpAdapter
from hub.delivery.calendar import CalendarAdapter
from hub.delivery.egress import EgressPolicy
from hub.delivery.senders import Senders
from hub.delivery.whatsapp_cloud import WhatsAppCloudAdapter


class Adapters:
    """The adapters of one process, sharing its kept-alive HTTP connections."""

    def __init__(
        self,
        max_connections: int = 100,
        *,
        engine: Engine | None = None,
        redis: Redis | None = None,
        egress: EgressPolicy | None = None,
    ) -> None:
        self.senders = Senders(egress)  # webhook, zapi, whatsapp_cloud: libcurl
        self.clients = ClientPool(max_connections, egress)  # google_calendar: httpx (authlib)
        self.amqp = AmqpAdapter()
        self._by_kind: dict[EndpointKind, Adapter] = {
            EndpointKind.WEBHOOK: WebhookAdapter(self.senders),
            EndpointKind.ZAPI: ZapiAdapter(self.senders),
            EndpointKind.EMAIL: EmailAdapter(egress),
            EndpointKind.WHATSAPP_CLOUD: WhatsAppCloudAdapter(self.senders),
            EndpointKind.AMQP: self.amqp,
            EndpointKind.GOOGLE_CALENDAR: CalendarAdapter(self.clients, engine, redis),
        }

    def for_kind(self, kind: EndpointKind) -> Adapter:
        return self._by_kind[kind]

    def close(self) -> None:
        self.senders.close()
        self.clients.close()
        self.amqp.close()
