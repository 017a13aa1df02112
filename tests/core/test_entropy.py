"""Unique random bytes (nonces, ids) drawn from the OS in a pool: never the same bytes twice."""

from __future__ import annotations

import os
import threading

from hub.core.entropy import RandomPool


def test_each_take_gets_bytes_no_other_take_got_and_the_pool_refills() -> None:
    pool = RandomPool(size=64)
    taken = [pool.take(12) for _ in range(100)]  # 1,200 bytes from a 64-byte pool: refilled
    assert all(len(t) == 12 for t in taken)
    assert len(set(taken)) == 100
    assert len(pool.take(100)) == 100  # more than the pool holds: drawn whole


def test_threads_taking_at_once_never_share_bytes() -> None:
    pool = RandomPool(size=120)
    seen: list[bytes] = []

    def take() -> None:
        seen.extend(pool.take(12) for _ in range(500))

    threads = [threading.Thread(target=take) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(seen) == 2000 and len(set(seen)) == 2000


def test_a_forked_child_does_not_hand_out_what_its_parent_drew() -> None:
    pool = RandomPool()
    pool.take(12)  # the parent has drawn a pool
    read, write = os.pipe()
    child = os.fork()
    if child == 0:  # the child: what it takes next goes back to the parent
        os.write(write, pool.take(12))
        os._exit(0)
    os.close(write)
    os.waitpid(child, 0)
    from_child = os.read(read, 12)
    os.close(read)
    assert len(from_child) == 12
    assert from_child != pool.take(12)  # the parent's next bytes: without the fix, the same
