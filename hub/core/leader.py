"""A leader lock in Redis: any number of processes may run, exactly one works at a time.

The sweeper runs one per host; each tries to take `LEADER_KEY` (SET NX with an expiry of `ttl`
seconds). The holder renews it every `ttl / 3` seconds from a thread of its own, so a long sweep
never loses it; a holder that dies stops renewing and another process takes over within `ttl`
plus one sweep interval.

Fencing: every acquisition takes the next number of `FENCE_KEY` (INCR), and the lock's value
carries it (`<holder>/<fence>`). Renewing and releasing compare the whole value in one Lua
script, so a process whose lock expired (it was paused, or lost Redis) can never renew or delete
its successor's; it learns that it lost the lock at its next renewal and `held()` turns False
before its next task. Log lines name the fence, so two leaders are never confused in the logs.
"""

from __future__ import annotations

import logging
import os
import socket
import threading
import uuid

from redis import Redis
from redis.exceptions import RedisError

log = logging.getLogger("hub.core.leader")

LEADER_TTL = 5.0  # seconds a dead leader keeps the lock; the takeover time, at most

_ACQUIRE = """
if redis.call('exists', KEYS[1]) == 1 then return 0 end
local fence = redis.call('incr', KEYS[2])
redis.call('set', KEYS[1], ARGV[1] .. '/' .. fence, 'PX', ARGV[2])
return fence
"""
_RENEW = """
if redis.call('get', KEYS[1]) == ARGV[1] then
  return redis.call('pexpire', KEYS[1], ARGV[2])
end
return 0
"""
_RELEASE = """
if redis.call('get', KEYS[1]) == ARGV[1] then return redis.call('del', KEYS[1]) end
return 0
"""


class LeaderLock:
    """One process's claim on a Redis leader lock (`key`), fenced by `fence_key`."""

    def __init__(self, redis: Redis, key: str, fence_key: str, *, ttl: float = LEADER_TTL) -> None:
        self.redis = redis
        self.key = key
        self.fence_key = fence_key
        self.ttl = ttl
        self.holder = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self.fence: int | None = None  # the fencing token while held
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def value(self) -> str:
        return f"{self.holder}/{self.fence}"

    def held(self) -> bool:
        """True while this process is the leader (as of the last renewal)."""
        return self.fence is not None

    def acquire(self) -> bool:
        """Take the lock if it is free (or keep it if held); True when this process leads.

        Raises RedisError when Redis cannot be asked; the caller is then not the leader.
        """
        with self._lock:
            if self.fence is not None:
                return self._renew_locked()
            keys = (self.key, self.fence_key)
            fence = int(self.redis.eval(_ACQUIRE, 2, *keys, self.holder, self._ms))
            if not fence:
                return False
            self.fence = fence
        log.warning("leader.acquired", extra={"fence": fence, "reason": self.key})
        self._start_renewing()
        return True

    def renew(self) -> bool:
        """Extend the lock; False (and no longer the leader) if it expired or was taken."""
        with self._lock:
            return self._renew_locked()

    def release(self) -> None:
        """Give the lock up (on a clean stop), so another process takes over at once."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=self.ttl)
        with self._lock:
            if self.fence is None:
                return
            try:
                self.redis.eval(_RELEASE, 1, self.key, self.value)
            except RedisError:
                pass  # it expires by itself
            log.warning("leader.released", extra={"fence": self.fence, "reason": self.key})
            self.fence = None

    @property
    def _ms(self) -> int:
        return int(self.ttl * 1000)

    def _renew_locked(self) -> bool:
        if self.fence is None:
            return False
        try:
            kept = bool(self.redis.eval(_RENEW, 1, self.key, self.value, self._ms))
        except RedisError as exc:
            kept = False
            reason = f"redis: {type(exc).__name__}"
        else:
            reason = "taken by another process or expired"
        if not kept:
            log.warning("leader.lost", extra={"fence": self.fence, "reason": reason})
            self.fence = None
        return kept

    def _start_renewing(self) -> None:
        if self._thread is not None and self._thread.is_alive():
            return
        self._stop.clear()
        self._thread = threading.Thread(target=self._renew_loop, name="leader-renew", daemon=True)
        self._thread.start()

    def _renew_loop(self) -> None:
        while not self._stop.wait(self.ttl / 3):
            if not self.renew():
                return
