"""What keeps the connector service's one event loop, which serves every GetTask, free of work it
does not need to wait for: a background status pass reads on a few threads at a time, and the objects
startup made are out of the collector's way (plugins/benchmarks/get_task_latency.py measured the
steady GetTask tail with and without each; the figures are next to the code)."""

from __future__ import annotations

import gc
import threading
import time

import cdao_connectors.service  # noqa: F401  (the module ``--modules`` loads)
from cdao_connectors._status_cache import StatusCache


def test_the_service_freezes_what_startup_made_out_of_every_collection():
    # flytekit, botocore's service models and the plugins: ~200,000 objects a full collection
    # would otherwise walk on the GetTask thread (https://docs.python.org/3.11/library/gc.html#gc.freeze).
    assert gc.get_freeze_count() > 100_000


def test_a_background_pass_reads_on_a_few_threads_at_once_and_refreshes_every_job():
    lock, busy, most = threading.Lock(), [0], [0]

    def describe(keys: list[str]) -> dict[str, dict[str, str]]:
        with lock:
            busy[0] += 1
            most[0] = max(most[0], busy[0])
        time.sleep(0.01)  # a round trip, long enough for reads of a wider pool to overlap
        with lock:
            busy[0] -= 1
        return {k: {"status": "RUNNING"} for k in keys}

    # parallel is what the connectors pass (their GetTask threads): the pass must not use all of it.
    cache = StatusCache(describe, batch=1, max_age=60.0, parallel=32)
    keys = [f"job-{i}" for i in range(40)]
    for key in keys:
        cache.seed(key, {"status": "SUBMITTED"})
    cache.refresh_ahead(older_than=0.0, wait=10.0)
    # A few, not the 32 threads it may use: each answer is parsed holding the GIL the loop needs.
    assert 1 <= most[0] <= 4
    assert all(cache.peek(k) == {"status": "RUNNING"} for k in keys)
