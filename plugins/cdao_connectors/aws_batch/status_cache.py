"""One shared view of many Batch jobs' status, refreshed with DescribeJobs in batches of 100.

Propeller asks GetTask for every running task every polling round; one DescribeJobs per GetTask
would cost N API calls per round and hit Batch's rate limits at a few hundred tasks. Here the first
GetTask that finds its entry older than ``max_age`` refreshes every tracked job in one pass
(ceil(N/100) calls) and everyone else reads the result. Entries are never served older than
``max_age``, so with ``max_age`` <= propeller's polling interval no status is staler than one round.
Nothing maintained does this (boto3 has no request coalescing), hence the hand-written class.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

DESCRIBE_BATCH = 100  # DescribeJobs' documented maximum number of ids per call


@dataclass
class _Entry:
    fetched_at: float
    job: dict[str, Any] | None  # None: Batch did not return the id


class JobStatusCache:
    def __init__(
        self,
        describe: Callable[[list[str]], list[dict[str, Any]]],
        max_age: float,
        idle_after: float | None = None,
        clock: Callable[[], float] = time.monotonic,
        parallel: int = 8,
    ):
        self._describe = describe
        self.max_age = max_age
        # A job nobody asked about for this long is finished from propeller's point of view
        # (terminal, aborted, or handled by another replica) and stops costing API calls.
        self._idle_after = idle_after if idle_after is not None else max(60.0, 10 * max_age)
        self._clock = clock
        self._parallel = parallel
        self._entries: dict[str, _Entry] = {}
        self._last_asked: dict[str, float] = {}
        self._lock = threading.Lock()
        self._refresh_lock = threading.Lock()
        self.describe_calls = 0

    def get(self, job_id: str) -> tuple[dict[str, Any] | None, float]:
        """The job's latest description and its age in seconds."""
        asked = self._clock()
        with self._lock:
            self._last_asked[job_id] = asked
            entry = self._entries.get(job_id)
            if entry is not None and asked - entry.fetched_at <= self.max_age:
                return entry.job, asked - entry.fetched_at
        with self._refresh_lock:
            with self._lock:
                entry = self._entries.get(job_id)
                # Another thread refreshed while we waited for the lock: its answer is fresh enough.
                now = self._clock()
                if entry is not None and now - entry.fetched_at <= self.max_age:
                    return entry.job, now - entry.fetched_at
            self._refresh()
            with self._lock:
                entry = self._entries[job_id]
                return entry.job, self._clock() - entry.fetched_at

    def seed(self, job: dict[str, Any]) -> None:
        """Record what SubmitJob just told us, so a new job's first GetTask costs no API call
        and hundreds of tasks starting together do not each trigger a refresh."""
        now = self._clock()
        with self._lock:
            self._entries[job["jobId"]] = _Entry(now, job)
            self._last_asked[job["jobId"]] = now

    def forget(self, job_id: str) -> None:
        with self._lock:
            self._entries.pop(job_id, None)
            self._last_asked.pop(job_id, None)

    def _refresh(self) -> None:
        now = self._clock()
        with self._lock:
            for job_id, asked in list(self._last_asked.items()):
                if now - asked > self._idle_after:
                    del self._last_asked[job_id]
                    self._entries.pop(job_id, None)
            # Refresh everything not fresh, so one pass serves the whole round.
            stale = [j for j in self._last_asked if j not in self._entries or now - self._entries[j].fetched_at > 0]
        chunks = [stale[i : i + DESCRIBE_BATCH] for i in range(0, len(stale), DESCRIBE_BATCH)]
        # Chunks go out in parallel so a refresh of thousands of jobs costs one round trip of
        # latency for the pollers waiting on it, not ten.
        if len(chunks) > 1:
            with ThreadPoolExecutor(min(len(chunks), self._parallel)) as pool:
                list(pool.map(self._refresh_chunk, chunks))
        elif chunks:
            self._refresh_chunk(chunks[0])

    def _refresh_chunk(self, chunk: list[str]) -> None:
        started = self._clock()
        jobs = self._describe(chunk)
        found = {j["jobId"]: j for j in jobs}
        with self._lock:
            self.describe_calls += 1
            for job_id in chunk:
                # Stamp with the request start: the answer is at least that fresh.
                self._entries[job_id] = _Entry(started, found.get(job_id))
