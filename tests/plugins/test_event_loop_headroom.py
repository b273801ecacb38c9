"""What keeps the connector service's one event loop, which serves every GetTask, free of work it
does not need to wait for: a background status pass reads on a few threads at a time, spread over
its period, and the objects startup made are out of the collector's way
(plugins/benchmarks/get_task_latency.py measured the steady GetTask tail with and without each;
the figures are next to the code)."""

from __future__ import annotations

import gc
import itertools
import threading
import time

import cdao_connectors.service  # noqa: F401  (the module ``--modules`` loads)
from cdao_connectors import _status_cache
from cdao_connectors._status_cache import StatusCache, refresh_period


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


def test_a_background_pass_starts_its_chunks_evenly_over_its_spread_not_at_once():
    """Every backend's cache starts with the same restart burst, so unspread passes came together
    every period, each answer parsed holding the GIL the event loop needs."""
    starts: list[float] = []
    lock = threading.Lock()

    def describe(keys: list[str]) -> dict[str, dict[str, str]]:
        with lock:
            starts.append(time.monotonic())
        return {k: {"status": "RUNNING"} for k in keys}

    cache = StatusCache(describe, batch=10, max_age=60.0)
    keys = [f"job-{i}" for i in range(40)]  # four chunks
    for key in keys:
        cache.seed(key, {"status": "SUBMITTED"})
    cache.refresh_ahead(older_than=0.0, wait=10.0, spread=0.4)
    gaps = [b - a for a, b in itertools.pairwise(sorted(starts))]
    assert len(starts) == 4 and min(gaps) >= 0.08, gaps  # one chunk every 0.1 s
    assert all(cache.peek(k) == {"status": "RUNNING"} for k in keys)


def test_a_spread_pass_keeps_every_tracked_entry_within_max_age():
    """A background pass runs every period (half of max_age, refresh_period) and spreads its reads
    over PASS_SPREAD_SHARE of it. An entry read at the end of one pass's spread is read at the end
    of the next one's too, so it must still be due when that pass starts (older than
    PASS_DUE_SHARE of the period), and the oldest an entry gets (a period plus a spread, for one
    read first then last; an entry just short of due waits a further period) stays inside max_age."""
    period = refresh_period(max_age=30.0)
    assert period is not None
    due, spread = _status_cache.PASS_DUE_SHARE * period, _status_cache.PASS_SPREAD_SHARE * period
    read_last_then_first = period - spread  # its age when the next pass starts
    assert read_last_then_first > due
    assert period + spread <= 30.0 and due + period + spread <= 30.0
