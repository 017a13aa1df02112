"""The adapter of each endpoint kind, one set per process sharing its connections.

webhook, zapi, email     hub.delivery.adapters
whatsapp_cloud           hub.delivery.whatsapp_cloud
amqp                     hub.delivery.amqp (one broker connection and channel per process)
google_calendar          hub.delivery.calendar (needs the database and Redis; loaded, with
                         httpx and authlib, by the process's first calendar send)
"""

from __future__ import annotations

import threading
from typing import Any

from redis import Redis
from sqlalchemy import Engine

from hub.core.models import EndpointKind
from hub.delivery.adapters import Adapter, EmailAdapter, WebhookAdapter, ZapiAdapter
from hub.delivery.amqp import AmqpAdapter
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
        self.amqp = AmqpAdapter()
        self._by_kind: dict[EndpointKind, Adapter] = {
            EndpointKind.WEBHOOK: WebhookAdapter(self.senders),
            EndpointKind.ZAPI: ZapiAdapter(self.senders),
            EndpointKind.EMAIL: EmailAdapter(egress),
            EndpointKind.WHATSAPP_CLOUD: WhatsAppCloudAdapter(self.senders),
            EndpointKind.AMQP: self.amqp,
        }
        self._calendar_args = (max_connections, engine, redis, egress)
        self._clients: Any = None  # the calendar's ClientPool (httpx), once it is loaded
        self._lock = threading.Lock()

    def for_kind(self, kind: EndpointKind) -> Adapter:
        adapter = self._by_kind.get(kind)
        if adapter is None and kind is EndpointKind.GOOGLE_CALENDAR:
            adapter = self._calendar()
        if adapter is None:
            raise KeyError(kind)
        return adapter

    def _calendar(self) -> Adapter:
        with self._lock:
            adapter = self._by_kind.get(EndpointKind.GOOGLE_CALENDAR)
            if adapter is None:
                from hub.delivery.calendar import CalendarAdapter, ClientPool

                max_connections, engine, redis, egress = self._calendar_args
                self._clients = ClientPool(max_connections, egress)
                adapter = CalendarAdapter(self._clients, engine, redis)
                self._by_kind[EndpointKind.GOOGLE_CALENDAR] = adapter
            return adapter

    def close(self) -> None:
        self.senders.close()
        if self._clients is not None:
            self._clients.close()
        self.amqp.close()
