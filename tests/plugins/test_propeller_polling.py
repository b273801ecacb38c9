"""Propeller polls every connector task often enough, and the connector service can serve it.

Propeller's connector plugin keeps ONE queue for every connector task type: ``webApi.caching.workers``
goroutines take one task at a time, a ``webApi.readRateLimiter`` token bucket paces them, and every
``resyncInterval`` each task in flight is enqueued again (flyteplugins/v1.16.8
``go/tasks/pluginmachinery/internal/webapi/cache.go``, ``core.go``; ``flytestdlib/cache/
in_memory_auto_refresh.go``; reproduced in ``support/propeller_polling.py``). These tests tie the values
in ``platform/addons/flyte/flyte-core/values.yaml`` to the target they were sized for, so an edit that
breaks the sizing fails here.
"""

from __future__ import annotations

from pathlib import Path

import yaml
from cdao_connectors import _deadlines, _status_cache
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_connectors.emr.task import EMR_SERVERLESS_TASK_TYPE, EMR_SPARK_TASK_TYPE
from cdao_connectors.sagemaker.task import (
    BATCH_TRANSFORM_TASK_TYPE,
    SAGEMAKER_PROCESSING_TASK_TYPE,
    SAGEMAKER_TRAINING_TASK_TYPE,
)
from connector_processes import DEPLOYMENT, REFRESH_SETTINGS, deployment_env
from kubernetes.utils import parse_quantity
from propeller_polling import PollingSettings, connector_service_values

# The connector task families the SDK starts, each with its own backend (issue #16's benchmark).
FAMILIES = {
    BATCH_TASK_TYPE,
    CODEWEAVE_TASK_TYPE,
    EMR_SPARK_TASK_TYPE,
    EMR_SERVERLESS_TASK_TYPE,
    BATCH_TRANSFORM_TASK_TYPE,
    SAGEMAKER_TRAINING_TASK_TYPE,
    SAGEMAKER_PROCESSING_TASK_TYPE,
}
# The load the platform is sized for: tasks in flight per family (issue #16).
IN_FLIGHT_PER_FAMILY = 1000
# A healthy GetTask's latency budget (issue #16's p99 target).
HEALTHY_GET_TASK_SECONDS = 0.1
# Measured with `uv run python plugins/benchmarks/get_task_latency.py --tasks 1000 --replicas 2
# [--refresh-seconds N]` on 2 cores shared with other work (load average 8-64): GetTasks per second
# of the service's CPU in the warm closed loop ("capacity" lines), the lowest backend's (Codeweave,
# which waits for its backend on every call, 328-375; the others 770-1900).
MEASURED_GET_TASKS_PER_CPU_SECOND = 320
# The "background refresh" line (nothing polling, 7000 tasks tracked by each of 2 replicas): CPU per
# replica, in cores, by CDAO_*_STATUS_REFRESH_SECONDS. A value not measured here must be measured.
MEASURED_BACKGROUND_CPU_BY_REFRESH_SECONDS = {5: 0.214, 20: 0.068, 30: 0.059}

# core.go validateConfig at flyteplugins/v1.16.8: propeller refuses to load the plugin outside these.
RANGES = {
    "caching.size": (10, 500000),
    "caching.workers": (1, 10000),
    "caching.resyncInterval": (5.0, 3600.0),
    "readRateLimiter.burst": (5, 10000),
    "readRateLimiter.qps": (1, 100000),
}

AUTOSCALING = DEPLOYMENT.parent / "autoscaling.yaml"


def _cpu_cores(quantity: str) -> float:
    """A Kubernetes CPU quantity (``250m``, ``2``) in cores (the Kubernetes client's parser)."""
    return float(parse_quantity(quantity))


def _min_replicas(path: Path = AUTOSCALING) -> int:
    hpa = next(d for d in yaml.safe_load_all(path.read_text()) if d["kind"] == "HorizontalPodAutoscaler")
    return int(hpa["spec"]["minReplicas"])


def _cpu_limit(path: Path = DEPLOYMENT) -> float:
    deployment = yaml.safe_load(path.read_text())
    return _cpu_cores(str(deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["limits"]["cpu"]))


SETTINGS = PollingSettings.from_values()
TASKS_IN_FLIGHT = len(FAMILIES) * IN_FLIGHT_PER_FAMILY


def test_propeller_accepts_the_polling_settings():
    web_api = connector_service_values()["webApi"]
    found = {
        "caching.size": web_api["caching"]["size"],
        "caching.workers": SETTINGS.workers,
        "caching.resyncInterval": SETTINGS.resync_seconds,
        "readRateLimiter.burst": SETTINGS.burst,
        "readRateLimiter.qps": SETTINGS.qps,
    }
    outside = {k: v for k, v in found.items() if not RANGES[k][0] <= v <= RANGES[k][1]}
    assert outside == {}, f"propeller refuses these webApi settings (core.go validateConfig): {outside}"
    # Struct fields, decoded by their json tags (pluginconfig.go); only the two rate limiter keys.
    assert set(web_api.get("readRateLimiter", {})) <= {"qps", "burst"}


def test_every_task_in_flight_is_polled_within_one_resync_interval():
    pass_seconds = max(0, TASKS_IN_FLIGHT - SETTINGS.burst) / SETTINGS.qps
    assert pass_seconds <= SETTINGS.resync_seconds, (
        f"{TASKS_IN_FLIGHT} tasks at readRateLimiter.qps {SETTINGS.qps:g} take {pass_seconds:.0f} s a pass, "
        f"longer than resyncInterval {SETTINGS.resync_seconds:g} s: statuses lag"
    )


def test_a_hung_backend_leaves_workers_for_every_other_family():
    """A family whose backend hangs holds one worker per GetTask for as long as a GetTask waits for a
    status read at most (a first sight's, plugins/cdao_connectors/_status_cache.py; a known job's is
    shorter); the others still need their share of the rate at a healthy latency."""
    per_family_qps = SETTINGS.qps / len(FAMILIES)
    held = per_family_qps * _status_cache.FIRST_SIGHT_WAIT_SECONDS
    healthy = (SETTINGS.qps - per_family_qps) * HEALTHY_GET_TASK_SECONDS
    assert SETTINGS.workers >= held + healthy, (
        f"caching.workers {SETTINGS.workers} < {held + healthy:.0f}: one hung backend starves the others"
    )
    # A GetTask propeller gave up on is an error it counts: the connectors answer inside its deadline.
    assert SETTINGS.timeout_seconds >= _deadlines.GET_TASK_SECONDS


def test_a_pass_releases_at_most_a_second_of_polling_at_once():
    assert SETTINGS.burst <= SETTINGS.qps


def test_the_minimum_replicas_serve_propellers_polling_and_their_own_refresh():
    replicas = _min_replicas()
    background = _background_cpu()
    polling = SETTINGS.qps / MEASURED_GET_TASKS_PER_CPU_SECOND / replicas
    assert polling + background <= _cpu_limit(), (
        f"each of the {replicas} minimum replicas needs {polling + background:.2f} CPU "
        f"({polling:.2f} for GetTasks, {background:.2f} for refresh passes), over its limit"
    )


def _refresh_seconds() -> float:
    return min(float(v) for v in deployment_env(REFRESH_SETTINGS).values())


def test_a_connector_refreshes_a_status_at_least_as_often_as_propeller_asks():
    """plugins/cdao_connectors/config.py: keep the refresh at or under propeller's interval, or
    propeller reads the same old status twice."""
    for name, value in deployment_env(REFRESH_SETTINGS).items():
        assert float(value) <= SETTINGS.resync_seconds, f"{name}={value} in {DEPLOYMENT}"


def _background_cpu() -> float:
    refresh = _refresh_seconds()
    assert refresh in MEASURED_BACKGROUND_CPU_BY_REFRESH_SECONDS, (
        f"no measured background refresh cost at {refresh:g} s: run plugins/benchmarks/get_task_latency.py "
        f"--tasks {IN_FLIGHT_PER_FAMILY} --replicas 2 --refresh-seconds {refresh:g} and record its line"
    )
    return MEASURED_BACKGROUND_CPU_BY_REFRESH_SECONDS[refresh]


def test_the_background_refresh_takes_at_most_a_quarter_of_a_replicas_cpu_request():
    """Every replica refreshes every task in flight, whether propeller asks it or another replica
    (a pass every refresh / 2 s, _status_cache.refresh_period); those passes must leave the
    replica's CPU request to the GetTasks."""
    deployment = yaml.safe_load(DEPLOYMENT.read_text())
    request = _cpu_cores(str(deployment["spec"]["template"]["spec"]["containers"][0]["resources"]["requests"]["cpu"]))
    background = _background_cpu()
    assert background <= request / 4, (
        f"background refresh passes at {_refresh_seconds():g} s over {TASKS_IN_FLIGHT} tasks cost "
        f"{background:.2f} CPU per replica, over a quarter of its {request:g} CPU request"
    )


class _SlowStub:
    """Stands in for the connector service's gRPC stub: GetTask answers after ``seconds`` on a timer
    thread (a grpc future's ``add_done_callback``/``result``), and the GetTasks outstanding at once
    are counted per task."""

    def __init__(self, seconds: float) -> None:
        import threading  # noqa: PLC0415
        from types import SimpleNamespace  # noqa: PLC0415

        self._seconds = seconds
        self._lock = threading.Lock()
        self.outstanding: dict[bytes, int] = {}
        self.most_outstanding: dict[bytes, int] = {}
        self.GetTask = SimpleNamespace(future=self._future)

    def _future(self, request, timeout):
        import threading  # noqa: PLC0415
        from concurrent.futures import Future  # noqa: PLC0415

        from flyteidl.admin import agent_pb2  # noqa: PLC0415

        key = request.resource_meta
        with self._lock:
            self.outstanding[key] = self.outstanding.get(key, 0) + 1
            self.most_outstanding[key] = max(self.most_outstanding.get(key, 0), self.outstanding[key])
        future: Future = Future()

        def answer() -> None:
            with self._lock:
                self.outstanding[key] -= 1
            future.set_result(agent_pb2.GetTaskResponse())

        threading.Timer(self._seconds, answer).start()
        return future


def test_the_propeller_stand_in_sends_a_slow_tasks_getTask_again_at_the_next_resync():
    """Upstream a worker takes a task off ``processing`` when it takes it from the queue, before its
    GetTask (flytestdlib cache/in_memory_auto_refresh.go at flyteplugins/v1.16.8, ``sync``:
    ``w.processing.Delete(itemID)`` before ``w.syncCb``), so the next resync enqueues it again while
    a slow GetTask is still outstanding and a hung backend's tasks hold more and more workers."""
    from propeller import poll_like_propeller  # noqa: PLC0415

    stub = _SlowStub(seconds=0.3)
    poll_like_propeller(stub, [(BATCH_TASK_TYPE, b"slow")], workers=4, resync=0.05, duration=0.2, deadline=1.0)
    assert stub.most_outstanding[b"slow"] > 1, stub.most_outstanding
