"""Per worker process: what the deliver job keeps between jobs (adapters, lanes, caches)."""

from __future__ import annotations

import threading
from collections import Counter
from concurrent.futures import Future
from concurrent.futures import wait as wait_all

from hub.core.context import JobContext
from hub.core.secrets import SecretCache
from hub.delivery.breaker import CircuitBreaker
from hub.delivery.egress import EgressPolicy
from hub.delivery.endpoints import EndpointConfig
from hub.delivery.kinds import Adapters
from hub.delivery.lanes import MAX_CONCURRENCY, Lanes
from hub.delivery.registry import EndpointRegistry
from hub.delivery.throttle import Throttle

RUNTIME_KEY = "delivery"


class DeliveryRuntime:
    """Per worker process: adapters with pooled clients, endpoint lanes, caches, Redis helpers."""

    def __init__(self, ctx: JobContext) -> None:
        egress = EgressPolicy.from_setting(ctx.settings.egress_allow)
        self.adapters = Adapters(MAX_CONCURRENCY, engine=ctx.engine, redis=ctx.redis, egress=egress)
        self.lanes = Lanes()
        self.registry = EndpointRegistry(ctx.engine, ctx.redis)
        self.secrets = SecretCache(ctx.engine, ctx.cipher, ctx.redis)
        self.throttle = Throttle(ctx.redis)
        self.redis = ctx.redis
        self.groups: set[Future[Counter[str]]] = set()  # handed to lanes, not yet finished
        self._groups_lock = threading.Lock()

    def track(self, group: Future[Counter[str]]) -> None:
        with self._groups_lock:
            self.groups.add(group)

        def forget(done: Future[Counter[str]]) -> None:
            with self._groups_lock:
                self.groups.discard(done)

        group.add_done_callback(forget)

    def drain(self, timeout: float | None = None) -> None:
        """Wait until every group handed to a lane is finished (a burst worker's last step)."""
        with self._groups_lock:
            groups = list(self.groups)
        wait_all(groups, timeout=timeout)

    def breaker(self, name: str, config: EndpointConfig) -> CircuitBreaker:
        return CircuitBreaker(
            self.redis, name, failures=config.circuit.failures, recovery=config.circuit.recovery
        )

    def close(self) -> None:
        self.lanes.close()  # waits for the sends in flight, which finish their groups
        self.adapters.close()


def runtime(ctx: JobContext) -> DeliveryRuntime:
    found = ctx.cache.get(RUNTIME_KEY)
    if not isinstance(found, DeliveryRuntime):
        found = ctx.cache[RUNTIME_KEY] = DeliveryRuntime(ctx)
    return found
