from __future__ import annotations

import time

from redis import Redis

from hub.delivery.breaker import CircuitBreaker, CircuitState, open_circuits


def test_the_circuit_opens_after_n_consecutive_failures(redis: Redis) -> None:
    breaker = CircuitBreaker(redis, "crm", failures=3, recovery=30)
    assert breaker.allow(5).state == CircuitState.CLOSED
    assert breaker.record_failure() == 1
    assert breaker.record_failure() == 2
    assert breaker.allow(5).allowed
    assert breaker.record_failure() == 3
    gate = breaker.allow(5)
    assert gate.state == CircuitState.OPEN and not gate.allowed
    assert 29 < gate.wait <= 30
    assert open_circuits(redis) == ["crm"]
    assert all(redis.ttl(key) > 0 for key in breaker.keys.values() if redis.exists(key))


def test_a_success_resets_the_count_of_consecutive_failures(redis: Redis) -> None:
    breaker = CircuitBreaker(redis, "crm", failures=3, recovery=30)
    breaker.record_failure(2)
    breaker.record_success()
    assert breaker.record_failure() == 1
    assert breaker.state() == CircuitState.CLOSED


def test_half_open_lets_one_probe_through_and_its_success_closes(redis: Redis) -> None:
    breaker = CircuitBreaker(redis, "crm", failures=2, recovery=0.2)
    other_worker = CircuitBreaker(redis, "crm", failures=2, recovery=0.2)
    breaker.record_failure(2)
    assert not breaker.allow(5).allowed
    time.sleep(0.25)
    assert breaker.state() == CircuitState.HALF_OPEN
    probe = breaker.allow(5)
    assert probe.state == CircuitState.PROBE and probe.allowed
    waiting = other_worker.allow(5)
    assert waiting.state == CircuitState.HALF_OPEN and not waiting.allowed
    breaker.record_success()
    assert other_worker.allow(5).state == CircuitState.CLOSED
    assert open_circuits(redis) == []


def test_a_failed_probe_opens_the_circuit_again(redis: Redis) -> None:
    breaker = CircuitBreaker(redis, "crm", failures=2, recovery=0.2)
    breaker.record_failure(2)
    time.sleep(0.25)
    assert breaker.allow(5).state == CircuitState.PROBE
    breaker.record_failure()
    gate = breaker.allow(5)
    assert gate.state == CircuitState.OPEN and 0 < gate.wait <= 0.2


def test_circuits_are_per_endpoint_and_a_redis_flush_closes_them(redis: Redis) -> None:
    CircuitBreaker(redis, "crm", failures=1).record_failure()
    assert CircuitBreaker(redis, "erp", failures=1).allow(5).state == CircuitState.CLOSED
    redis.flushdb()
    assert CircuitBreaker(redis, "crm", failures=1).allow(5).state == CircuitState.CLOSED
