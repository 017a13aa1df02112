"""The cyclic garbage collector in hub's long-running processes (web, worker, sweeper).

Python's collector passes over the young objects every 700 allocations and, now and then, over
every object the process holds. In a worker that has loaded SQLAlchemy, rq, urllib3 and hub, such
a full pass took 150-390 ms on this machine: every send and commit of that process stopped, and
the p99 of `hub bench e2e --rate` was made of those stops. `settle()`, once start-up is done,
collects once, moves what survived (modules, classes, settings, pools) out of the collector's
sight for good (`gc.freeze`), and spaces the young passes: a request's or a job's objects mostly
die by reference count before a pass. Every 5,000 allocations a pass takes up to 10-15 ms here;
every 20,000 it took up to 40 ms (it also frees the cyclic garbage, about a quarter of them).
"""

from __future__ import annotations

import gc

THRESHOLDS = (5_000, 20, 20)  # generation 0 every 5,000 allocations (Python's: 700, 10, 10)


def settle() -> None:
    """Start-up is done: collect, freeze what survived, and collect young objects less often."""
    gc.collect()
    gc.freeze()
    gc.set_threshold(*THRESHOLDS)
