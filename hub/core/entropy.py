"""Random bytes for values that are unique but not secret (AES-GCM nonces, ids), drawn from the
operating system 4 KiB at a time.

`os.urandom` releases the GIL around its `getrandom` call. Alone that costs nothing (0.24 µs a
call here), but in a process whose other threads want the GIL it hands the GIL away, and the
caller waits its turn to take it back: on the web's event-loop thread under load, with the group
commit's threads running, a call took 5.9 µs, and a webhook made three (two encryptions and its
event id). Each caller here still gets fresh bytes of the OS's CSPRNG that no other caller gets,
and a forked child forgets what its parent drew. Secrets (keys, tokens) come from `secrets`, never
from here: the pool would keep them in memory before they are used.
"""

from __future__ import annotations

import os
import threading

POOL_BYTES = 4096


class RandomPool:
    """Bytes of `os.urandom`, handed out once each, refilled when used up."""

    def __init__(self, size: int = POOL_BYTES) -> None:
        self.size = size
        self._forget()
        os.register_at_fork(after_in_child=self._forget)

    def _forget(self) -> None:
        self._lock = threading.Lock()
        self._pool = b""
        self._at = 0

    def take(self, n: int) -> bytes:
        with self._lock:
            at = self._at
            if at + n > len(self._pool):
                self._pool, at = os.urandom(max(self.size, n)), 0
            self._at = at + n
            return self._pool[at : at + n]


_pool = RandomPool()
unique_bytes = _pool.take
