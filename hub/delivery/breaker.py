"""Circuit breaker per endpoint, shared by every worker through a few Redis keys with a TTL.

    closed     ── N consecutive failures ──►  open (the `open` key lives `recovery` seconds)
    open       ── `open` key expires ──────►  half-open (`tripped` still set)
    half-open  ── one probe takes `probe` ──► success: closed · failure: open again

Keys (`hub:circuit:<endpoint>:…`): `failures` (consecutive failures), `open`, `tripped`, `probe`.
Every key has a TTL, so a Redis flush or a forgotten endpoint just leaves the circuit closed.
Failures are what say the endpoint is unwell: connection errors, timeouts, 5xx, 408/425/429; any
other answer (2xx, a permanent 4xx) proves it is up and closes the circuit.
"""

from __future__ import annotations

import enum
import logging
from dataclasses import dataclass

from redis import Redis

from hub.core.queues import CIRCUIT_PREFIX

log = logging.getLogger("hub.delivery.breaker")

FAILURES_TTL = 24 * 3600  # consecutive failures are forgotten after a quiet day
TRIPPED_TTL = 7 * 24 * 3600

# KEYS: open, tripped, probe · ARGV: probe lease ms → {state, wait ms}
_ALLOW = """
local open_ttl = redis.call('PTTL', KEYS[1])
if open_ttl > 0 then return {'open', open_ttl} end
if redis.call('EXISTS', KEYS[2]) == 0 then return {'closed', 0} end
if redis.call('SET', KEYS[3], '1', 'NX', 'PX', ARGV[1]) then return {'probe', 0} end
return {'half_open', redis.call('PTTL', KEYS[3])}
"""

# KEYS: failures, open, tripped, probe
# ARGV: threshold, recovery ms, failures ttl, tripped ttl, count
_FAILURE = """
local n = redis.call('INCRBY', KEYS[1], ARGV[5])
redis.call('EXPIRE', KEYS[1], ARGV[3])
if n >= tonumber(ARGV[1]) then
  redis.call('SET', KEYS[3], '1', 'EX', ARGV[4])
  if redis.call('SET', KEYS[2], '1', 'NX', 'PX', ARGV[2]) then
    redis.call('DEL', KEYS[4])
    return n
  end
end
return -n
"""


class CircuitState(enum.StrEnum):
    CLOSED = "closed"
    OPEN = "open"
    HALF_OPEN = "half_open"  # a probe is in flight: others wait
    PROBE = "probe"  # half-open, and this caller holds the one probe


@dataclass(frozen=True)
class Gate:
    state: CircuitState
    wait: float  # seconds until it is worth asking again (0 when allowed)

    @property
    def allowed(self) -> bool:
        return self.state in (CircuitState.CLOSED, CircuitState.PROBE)


class CircuitBreaker:
    """The circuit of one endpoint: `failures` in a row open it for `recovery` seconds."""

    def __init__(self, redis: Redis, endpoint: str, *, failures: int = 5, recovery: float = 30.0):
        self.redis = redis
        self.endpoint = endpoint
        self.threshold = failures
        self.recovery = recovery
        base = f"{CIRCUIT_PREFIX}{endpoint}:"
        self.keys = {name: base + name for name in ("failures", "open", "tripped", "probe")}

    def allow(self, probe_lease: float) -> Gate:
        """May a request go now? In half-open state only the caller that gets the probe may."""
        k = self.keys
        state, wait_ms = self.redis.eval(
            _ALLOW, 3, k["open"], k["tripped"], k["probe"], max(int(probe_lease * 1000), 1)
        )
        state = state.decode() if isinstance(state, bytes) else state
        return Gate(CircuitState(state), max(int(wait_ms), 0) / 1000)

    def record_success(self) -> None:
        k = self.keys
        with self.redis.pipeline(transaction=True) as pipe:
            pipe.delete(k["tripped"])
            pipe.delete(k["failures"], k["open"], k["probe"])
            was_tripped, _ = pipe.execute()
        if was_tripped:
            log.info("circuit.closed", extra={"endpoint": self.endpoint})

    def record_failure(self, count: int = 1) -> int:
        """Count failures; returns the consecutive failures (and opens the circuit at N)."""
        k = self.keys
        n = int(
            self.redis.eval(
                _FAILURE,
                4,
                k["failures"],
                k["open"],
                k["tripped"],
                k["probe"],
                self.threshold,
                max(int(self.recovery * 1000), 1),
                FAILURES_TTL,
                TRIPPED_TTL,
                count,
            )
        )
        if n > 0:
            log.warning(
                "circuit.opened",
                extra={"endpoint": self.endpoint, "count": n, "delay_s": self.recovery},
            )
        return abs(n)

    def state(self) -> CircuitState:
        """Closed, open or half-open, without taking the probe (for /status)."""
        if self.redis.exists(self.keys["open"]):
            return CircuitState.OPEN
        if self.redis.exists(self.keys["tripped"]):
            return CircuitState.HALF_OPEN
        return CircuitState.CLOSED


def open_circuits(redis: Redis) -> list[str]:
    """Names of endpoints whose circuit is open or half-open right now (for /status)."""
    prefix = CIRCUIT_PREFIX
    names = set()
    for key in redis.scan_iter(match=f"{prefix}*:tripped", count=500):
        text = key.decode() if isinstance(key, bytes) else key
        names.add(text[len(prefix) : -len(":tripped")])
    return sorted(names)
