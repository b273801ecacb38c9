"""The shared status cache (Batch, EMR, SageMaker jobs): batching, freshness, one refresh per round."""

from __future__ import annotations

import functools
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml
from botocore.exceptions import ClientError
from cdao_connectors import _deadlines, _status_cache
from cdao_connectors._status_cache import StatusCache
from cdao_connectors.aws_batch.connector import DESCRIBE_JOBS_BATCH as DESCRIBE_BATCH


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Describer:
    """Stands in for DescribeJobs; records the ids of each call."""

    def __init__(self) -> None:
        self.calls: list[list[str]] = []
        self.status = "RUNNING"
        self.lock = threading.Lock()

    def __call__(self, ids: list[str]) -> dict[str, dict[str, str]]:
        with self.lock:
            self.calls.append(list(ids))
        return {i: {"jobId": i, "status": self.status} for i in ids if not i.startswith("gone")}


def test_one_pass_refreshes_every_tracked_job_in_batches_of_100():
    clock, describe = Clock(), Describer()
    cache = StatusCache(describe, batch=DESCRIBE_BATCH, max_age=5.0, clock=clock)
    ids = [f"job-{i}" for i in range(250)]
    for i in ids:
        cache.seed(i, {"jobId": i, "status": "SUBMITTED"})
    assert all(cache.get(i)[0]["status"] == "SUBMITTED" for i in ids)
    assert describe.calls == []

    clock.now += 5.1  # one polling interval later: every entry is too old
    assert [cache.get(i)[0]["status"] for i in ids] == ["RUNNING"] * 250
    assert [len(c) for c in describe.calls] == [100, 100, 50]
    assert all(len(c) <= DESCRIBE_BATCH for c in describe.calls)


def test_answers_are_never_older_than_max_age():
    clock, describe = Clock(), Describer()
    cache = StatusCache(describe, batch=DESCRIBE_BATCH, max_age=5.0, clock=clock)
    cache.get("a")
    for step in (1.0, 2.0, 1.9, 0.5, 4.9, 0.2):
        clock.now += step
        age = cache.get("a").age
        assert age <= 5.0
    describe.status = "SUCCEEDED"
    clock.now += 5.01
    assert cache.get("a")[0]["status"] == "SUCCEEDED"


class SlowDescriber(Describer):
    """DescribeJobs that takes time, during which pollers keep arriving and the clock moves."""

    def __init__(self, clock: Clock) -> None:
        super().__init__()
        self.clock = clock

    def __call__(self, ids: list[str]) -> dict[str, dict[str, str]]:
        with self.lock:
            self.clock.now += 0.1
        time.sleep(0.05)
        return super().__call__(ids)


def test_concurrent_pollers_share_one_refresh():
    clock = Clock()
    describe = SlowDescriber(clock)
    cache = StatusCache(describe, batch=DESCRIBE_BATCH, max_age=5.0, clock=clock, parallel=1)
    ids = [f"j{i}" for i in range(300)]
    for i in ids:
        cache.seed(i, {"jobId": i, "status": "SUBMITTED"})
    clock.now += 6
    with ThreadPoolExecutor(16) as pool:
        statuses = list(pool.map(lambda i: cache.get(i)[0]["status"], ids))
    assert statuses == ["RUNNING"] * 300
    assert len(describe.calls) == 3


def test_unknown_ids_and_idle_jobs():
    clock, describe = Clock(), Describer()
    cache = StatusCache(describe, batch=DESCRIBE_BATCH, max_age=5.0, idle_after=60, clock=clock)
    assert cache.get("gone-1")[0] is None  # Batch no longer knows it
    cache.get("busy")
    clock.now += 61
    cache.get("busy")  # gone-1 was not asked for 61 s: dropped from the refresh
    assert describe.calls[-1] == ["busy"]


def test_without_batching_a_new_job_never_waits_for_another_jobs_describe():
    """EMR Serverless and SageMaker have one Describe per job: after a restart, 1000 jobs first seen
    together made every GetTask wait for one pass of 1000 Describes (p99 9 s, 14 past the deadline)."""
    released = threading.Event()

    def describe(keys: list[str]) -> dict[str, dict[str, str]]:
        if "slow" in keys:
            released.wait(10)
        return {k: {"status": "RUNNING"} for k in keys}

    cache = StatusCache(describe, batch=1, max_age=5.0)
    with ThreadPoolExecutor(2) as pool:
        slow = pool.submit(cache.get, "slow")
        time.sleep(0.05)  # its Describe is in and hanging
        fast = pool.submit(cache.get, "fast")
        try:
            assert fast.result(timeout=2)[0] == {"status": "RUNNING"}
            assert not slow.done()
        finally:
            released.set()
        assert slow.result(timeout=2)[0] == {"status": "RUNNING"}


class Hanging:
    """A describe that hangs until released, as a backend accepting requests and never answering."""

    def __init__(self) -> None:
        self.released = threading.Event()
        self.calls: list[list[str]] = []

    def __call__(self, keys: list[str]) -> dict[str, dict[str, str]]:
        self.calls.append(list(keys))
        self.released.wait(30)
        return {k: {"status": "RUNNING"} for k in keys}


def _timed(call):
    start = time.monotonic()
    try:
        return time.monotonic() - start, call()
    except Exception as exc:  # the error is what is being timed
        return time.monotonic() - start, exc


def test_a_known_status_is_answered_within_the_bound_while_its_backend_hangs(production_status_waits):
    describe = Hanging()
    for batch in (1, DESCRIBE_BATCH):
        cache = StatusCache(describe, batch=batch, max_age=0.001)
        cache.seed("job-1", {"status": "RUNNING"})
        time.sleep(0.01)
        try:
            for _ in range(3):  # the first starts the refresh, the others find it still going
                took, known = _timed(functools.partial(cache.get, "job-1"))
                assert known.value == {"status": "RUNNING"} and "has not answered" in known.stale, known
                assert took < _status_cache.KNOWN_STATUS_WAIT_SECONDS + 0.2, took
        finally:
            describe.released.set()
        describe.released.clear()
    # One refresh per job in flight, however many GetTasks ask meanwhile.
    assert describe.calls == [["job-1"], ["job-1"]]


def test_a_first_sight_read_is_bounded_and_asked_only_once_while_the_backend_hangs(production_status_waits):
    # Takes FIRST_SIGHT_WAIT_SECONDS (2 s): the bound itself is what is proven.
    describe = Hanging()
    cache = StatusCache(describe, batch=1, max_age=0.001)
    try:
        took, error = _timed(lambda: cache.get("new"))
        assert isinstance(error, _status_cache.StatusNotAnswered) and "retry" in str(error), error
        assert _status_cache.FIRST_SIGHT_WAIT_SECONDS - 0.1 < took < _status_cache.FIRST_SIGHT_WAIT_SECONDS + 0.3
        # Its read still hangs: the next GetTask of the job waits only the short bound.
        took, error = _timed(lambda: cache.get("new"))
        assert isinstance(error, _status_cache.StatusNotAnswered), error
        assert took < _status_cache.KNOWN_STATUS_WAIT_SECONDS + 0.2, took
    finally:
        describe.released.set()
    assert _wait_for(lambda: cache.peek("new")) == {"status": "RUNNING"}  # the read's answer is kept
    assert describe.calls == [["new"]]


def _wait_for(probe, timeout: float = 5.0):
    end = time.monotonic() + timeout
    while (value := probe()) is None and time.monotonic() < end:
        time.sleep(0.01)
    return value


def test_a_hung_read_delays_only_its_own_job_not_the_next_background_pass():
    released = threading.Event()
    calls: list[str] = []

    def describe(keys: list[str]) -> dict[str, dict[str, str]]:
        calls.extend(keys)
        if "hung" in keys:
            released.wait(10)
        return {k: {"status": "RUNNING"} for k in keys}

    cache = StatusCache(describe, batch=1, max_age=60.0)
    for key in ("hung", "ok"):
        cache.seed(key, {"status": "SUBMITTED"})
    try:
        for _ in range(2):
            took, _ = _timed(functools.partial(cache.refresh_ahead, older_than=0.0, wait=0.2))
            assert took < 1.0, f"a background pass waited {took:.1f}s for one hung read"
        assert calls.count("ok") == 2 and calls.count("hung") == 1  # never asked twice at once
        assert cache.peek("ok") == {"status": "RUNNING"}
    finally:
        released.set()


AUTOSCALING = Path(__file__).parents[2] / "platform" / "addons" / "connectors" / "base" / "autoscaling.yaml"


def test_the_replica_count_the_idle_window_is_sized_for_is_the_autoscalers_maximum():
    (hpa,) = [d for d in yaml.safe_load_all(AUTOSCALING.read_text()) if d["kind"] == "HorizontalPodAutoscaler"]
    assert hpa["spec"]["scaleTargetRef"]["name"] == "cdao-connector"
    assert hpa["spec"]["maxReplicas"] == _status_cache.MAX_REPLICAS


def test_a_live_job_this_replica_missed_for_many_resyncs_is_still_known_when_throttled():
    """Round robin over 8 replicas misses a task's GetTask 30 resyncs in a row on a given replica
    with chance (7/8)^30, 1.8 % (18 of 1000 tasks): its status must still be known there, so a
    throttled refresh answers the last known status, not an error that spends propeller's budget."""
    clock, throttled = Clock(), {"on": False}

    def describe(ids):
        if throttled["on"]:
            raise ClientError({"Error": {"Code": "ThrottlingException", "Message": "Rate exceeded"}}, "DescribeJobs")
        return {i: {"jobId": i, "status": "RUNNING"} for i in ids}

    # A period longer than the test: the background pass is driven by hand.
    cache = StatusCache(describe, batch=DESCRIBE_BATCH, max_age=30.0, period=3600.0, clock=clock)
    assert cache.get("job-1").value["status"] == "RUNNING"
    clock.now += 30 * _deadlines.PROPELLER_RESYNC_SECONDS
    throttled["on"] = True
    with pytest.raises(ClientError):
        cache.refresh_ahead(older_than=15.0)  # this replica's background pass meanwhile
    known = cache.get("job-1")
    assert known.value["status"] == "RUNNING" and known.stale, known


def test_a_job_nobody_asked_about_for_the_idle_window_is_forgotten():
    clock, describe = Clock(), Describer()
    cache = StatusCache(describe, batch=DESCRIBE_BATCH, max_age=30.0, clock=clock)
    cache.get("ended")
    clock.now += _status_cache.IDLE_AFTER_SECONDS + 1
    cache.get("live")
    assert cache.peek("ended") is None and describe.calls[-1] == ["live"]


class RoundTrip(Describer):
    """DescribeJobs taking a round trip (a sleep: no CPU, as a remote call), held to its 100-id
    limit (botocore batch/2016-08-10 service-2.json, DescribeJobsRequest.jobs: "A list of up to
    100 job IDs")."""

    def __init__(self, seconds: float) -> None:
        super().__init__()
        self.seconds = seconds

    def __call__(self, ids: list[str]) -> dict[str, dict[str, str]]:
        assert len(ids) <= DESCRIBE_BATCH, f"DescribeJobs takes up to {DESCRIBE_BATCH} ids, got {len(ids)}"
        time.sleep(self.seconds)
        return super().__call__(ids)


def _first_sights_at_once(cache: StatusCache, keys: list[str]) -> list[tuple[float, object]]:
    """Every key's GetTask read (``aget``) at once on one event loop, as the service's GetTasks
    wait: (seconds each took, its Known or the error)."""
    import asyncio  # noqa: PLC0415

    async def timed(key: str) -> tuple[float, object]:
        start = time.monotonic()
        try:
            answer: object = await cache.aget(key)
        except Exception as exc:  # the error is what is being counted
            answer = exc
        return time.monotonic() - start, answer

    async def all_at_once() -> list[tuple[float, object]]:
        return await asyncio.gather(*(timed(key) for key in keys))

    return asyncio.run(all_at_once())


def test_first_sights_arriving_together_share_describes_of_up_to_the_batch_and_answer_within_the_bound():
    """After a restart every job is new to the replica. 1000 first sights arriving together cost
    ceil(1000 / 100) DescribeJobs calls, not one call each (604 of 1000 EMR first sights and up to
    150 of other backends' errored at the 2 s bound, each spending one of propeller's
    maxSystemFailures); each is answered within the first-sight bound."""
    describe = RoundTrip(0.05)
    cache = StatusCache(describe, batch=DESCRIBE_BATCH, max_age=5.0)
    keys = [f"job-{i}" for i in range(1000)]
    answers = _first_sights_at_once(cache, keys)
    errors = [answer for _, answer in answers if isinstance(answer, Exception)]
    assert not errors, f"{len(errors)} first sights errored: {errors[0]}"
    assert [answer.value["jobId"] for _, answer in answers] == keys
    assert len(describe.calls) <= -(-len(keys) // DESCRIBE_BATCH), [len(c) for c in describe.calls]
    slowest = max(took for took, _ in answers)
    assert slowest < _status_cache.FIRST_SIGHT_WAIT_SECONDS, f"a first sight waited {slowest:.2f}s"


def test_first_sights_arriving_while_the_backend_is_slow_share_calls_with_each_other():
    """First sights that arrive while every read thread is out in a slow call wait for the next
    free thread together, and it takes them in one call: the calls a slow backend is asked grow
    with the batches, not with the GetTasks."""
    entered, released = threading.Event(), threading.Event()
    describe = RoundTrip(0.0)

    def slow_first(ids: list[str]) -> dict[str, dict[str, str]]:
        if "job-first" in ids:
            entered.set()
            released.wait(10)  # out until every later first sight has queued its read
        return describe(ids)

    cache = StatusCache(slow_first, batch=DESCRIBE_BATCH, max_age=5.0, parallel=1)
    with ThreadPoolExecutor(50) as pool:
        first = pool.submit(cache.get, "job-first")
        assert entered.wait(5)  # its call is out and holds the only read thread
        later = [pool.submit(cache.get, f"job-{i}") for i in range(49)]
        try:
            assert _wait_for(lambda: cache.inline_refreshes == 50 or None), cache.inline_refreshes
        finally:
            released.set()
        assert first.result().value["jobId"] == "job-first"
        assert all(known.result().value is not None for known in later)
    assert [len(call) for call in describe.calls] == [1, 49]


def test_a_first_sight_never_waits_behind_a_background_pass():
    """The background pass and GetTasks' reads have their own threads: a pass whose calls all hang
    (a throttled backend retrying) leaves a new job's read free to answer at once."""
    released = threading.Event()

    def describe(keys: list[str]) -> dict[str, dict[str, str]]:
        if any(key.startswith("tracked") for key in keys):
            released.wait(10)
        return {key: {"status": "RUNNING"} for key in keys}

    cache = StatusCache(describe, batch=1, max_age=5.0, parallel=2)
    for key in ("tracked-1", "tracked-2"):
        cache.seed(key, {"status": "SUBMITTED"})
    try:
        cache.refresh_ahead(older_than=0.0, wait=0)  # both pass calls out, holding the pass's threads
        took, known = _timed(lambda: cache.get("new"))
        assert not isinstance(known, Exception), known
        assert known.value == {"status": "RUNNING"}
        assert took < 0.5, f"a first sight waited {took:.2f}s behind the background pass"
    finally:
        released.set()


def test_an_attachment_lives_only_as_long_as_the_entry_value_it_was_made_of():
    """A GetTask's slow outputs check is kept with the job's status entry (BulkheadConnector): a
    refresh that replaces the entry, forgetting the key, or detaching it ends it, so what is kept
    is bounded by the cache's own entries (issue #16 review: 50 checks left behind)."""
    statuses = {"j": {"status": "SUCCEEDED"}}
    cache = StatusCache(lambda keys: {k: dict(statuses[k]) for k in keys}, max_age=60.0, batch=10)
    cache.seed("j", statuses["j"])
    value = cache.get("j").value
    made = object()
    assert cache.attachment("j", value, lambda: made) is made
    assert cache.attachment("j", value, object) is made  # the same entry: the same object
    cache.refresh_ahead(older_than=0.0)  # a new answer replaces the entry
    assert cache.attachment("j", value, object) is not made  # of the old value: made afresh, not kept
    value = cache.get("j").value
    again = cache.attachment("j", value, object)
    cache.detach("j", again)
    assert cache.attachment("j", value, object) is not again
    cache.forget("j")
    assert cache.attachment("j", value, lambda: made) is made and cache.attachment("j", value, object) is not made
