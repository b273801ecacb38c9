"""The benchmarks in plugins/benchmarks reuse the connector tests' helpers (tests/plugins/support)
and the standard library instead of keeping copies, and still run end to end. They measure; nothing
here passes or fails on time."""

from __future__ import annotations

import ast
import asyncio
import importlib.util
import re
import sys
import time
from pathlib import Path

import pytest
import yaml
from connector_calls import run_to_end as _run
from flytekit.extend.backend.base_connector import ConnectorRegistry

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "plugins" / "benchmarks"
SUPPORT = ROOT / "tests" / "plugins" / "support"


def _function_bodies(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    return {
        f"{path.relative_to(ROOT)}::{node.name}": ast.dump(ast.Module(body=node.body, type_ignores=[]))
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_no_benchmark_keeps_a_copy_of_a_helper() -> None:
    bodies: dict[str, list[str]] = {}
    for path in sorted([*BENCHMARKS.glob("*.py"), *SUPPORT.glob("*.py")]):
        for name, body in _function_bodies(path).items():
            bodies.setdefault(body, []).append(name)
    copies = [names for names in bodies.values() if len(names) > 1 and any("benchmarks" in n for n in names)]
    assert copies == [], f"the same function body in several places: {copies}"


def test_batch_polling_runs_small(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("batch_polling", BENCHMARKS / "batch_polling.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "batch_polling", module)
    # The baseline connector registers itself in flytekit's process-wide registry: taken out again
    # afterwards, so that later tests see only the service's own connectors.
    monkeypatch.setattr(ConnectorRegistry, "_REGISTRY", dict(ConnectorRegistry._REGISTRY))
    monkeypatch.setattr(ConnectorRegistry, "_METADATA", dict(ConnectorRegistry._METADATA))
    spec.loader.exec_module(module)
    # main() points this process at its moto server; monkeypatch puts the variables back afterwards.
    for key in (
        *("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "CDAO_AWS_REGION"),
        *("CDAO_BATCH_SPOT_QUEUE", "CDAO_BATCH_ON_DEMAND_QUEUE", "CDAO_BATCH_STATUS_REFRESH_SECONDS"),
        *("CDAO_ATTEMPT_TABLE", "CDAO_STACK"),
    ):
        monkeypatch.setenv(key, "unset")
    assert module.main(["--jobs", "4", "--rounds", "2", "--interval", "0.2", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "connector: aws_api_calls_per_round=" in out and "naive: aws_api_calls_per_round=" in out
    assert "api_calls_ratio=" in out
    # The baseline really reads each job on each GetTask (4 jobs a round), the connector does not.
    naive = float(re.search(r"naive: aws_api_calls_per_round=([\d.]+)", out).group(1))
    assert naive >= 4


def _latency_benchmark(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("get_task_latency", BENCHMARKS / "get_task_latency.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "get_task_latency", module)
    spec.loader.exec_module(module)
    return module


def test_polling_settings_are_our_values_with_the_connector_plugins_defaults(tmp_path: Path) -> None:
    from propeller_polling import PollingSettings, connector_service_values  # noqa: PLC0415

    values = tmp_path / "values.yaml"
    section = {"defaultConnector": {"endpoint": "k8s://x:8000"}, "webApi": {"caching": {"size": 10}}}
    values.write_text(yaml.safe_dump({"configmap": {"enabled_plugins": {"plugins": {"connector-service": section}}}}))
    # connector/config.go defaultConfig at flyteplugins/v1.16.8 for every key left unset.
    assert PollingSettings.from_values(values) == PollingSettings(10, 10.0, 100, 30.0, 10.0)
    section["webApi"] = {"caching": {"workers": 40, "resyncInterval": "1m"}, "readRateLimiter": {"qps": 300}}
    section["defaultConnector"]["defaultTimeout"] = "30s"
    values.write_text(yaml.safe_dump({"configmap": {"enabled_plugins": {"plugins": {"connector-service": section}}}}))
    assert PollingSettings.from_values(values) == PollingSettings(40, 300.0, 100, 60.0, 30.0)
    assert connector_service_values(values) == section


def test_a_duration_that_is_not_gos_is_refused_naming_where() -> None:
    from propeller_polling import go_duration  # noqa: PLC0415

    assert go_duration("1m30s", "x") == 90.0 and go_duration("500ms", "x") == 0.5 and go_duration("0", "x") == 0
    with pytest.raises(ValueError, match=r"webApi.caching.resyncInterval: '30' is not a Go duration"):
        go_duration("30", "webApi.caching.resyncInterval")


def _poll(keys: list, get, settings, seconds: float):
    """Runs an :class:`AutoRefreshPoller` over ``keys`` for ``seconds``; the poller and when it started."""
    from propeller_polling import AutoRefreshPoller  # noqa: PLC0415

    async def polling():
        poller = AutoRefreshPoller(keys, get, settings)
        begun = time.monotonic()
        poller.start()
        await asyncio.sleep(seconds)
        await poller.stop()
        return poller, begun

    return _run(polling())


def test_the_poller_keeps_propellers_workers_rate_and_resync() -> None:
    """Workers bound concurrency, the token bucket bounds starts to burst + qps * t (x/time/rate),
    no start comes before the 5 ms item delay, every task is polled again each resync interval,
    and each GetTask gets propeller's deadline."""
    from propeller_polling import ITEM_BASE_DELAY_SECONDS, PollingSettings  # noqa: PLC0415

    settings = PollingSettings(workers=3, qps=200.0, burst=5, resync_seconds=0.1, timeout_seconds=1.0)
    deadlines: set[float] = set()

    async def get(key: object, deadline: float) -> bool:
        deadlines.add(deadline)
        await asyncio.sleep(0.01)
        return key != "broken"

    keys = [f"t{i}" for i in range(9)] + ["broken"]
    poller, begun = _poll(keys, get, settings, 0.5)
    syncs = sorted(poller.syncs, key=lambda s: s.started)
    assert poller.max_in_flight == settings.workers
    assert deadlines == {settings.timeout_seconds}
    assert syncs[0].started - begun >= ITEM_BASE_DELAY_SECONDS
    for n, sync in enumerate(syncs, start=1):
        assert n <= settings.burst + settings.qps * (sync.started - begun) + 1
    per_key = {k: [s for s in syncs if s.key == k] for k in keys}
    assert all(len(mine) >= 2 for mine in per_key.values()), {k: len(v) for k, v in per_key.items()}
    assert not any(s.ok for s in per_key["broken"]) and all(s.ok for s in per_key["t0"])


def test_the_poller_paces_every_start_by_one_bucket() -> None:
    """Past the burst, starts come at ``qps`` however many workers are idle: one bucket for the whole
    queue (cache.go ``NewResourceCache``), not one per worker or per task."""
    from propeller_polling import PollingSettings  # noqa: PLC0415

    settings = PollingSettings(workers=20, qps=50.0, burst=2, resync_seconds=10.0, timeout_seconds=1.0)

    async def get(key: object, deadline: float) -> bool:
        return True

    poller, begun = _poll([f"t{i}" for i in range(40)], get, settings, 0.3)
    # burst + qps * 0.3 s = 17, give or take a start at the window's edge.
    assert 14 <= len(poller.syncs) <= 18, len(poller.syncs)
    assert max(s.started for s in poller.syncs) - begun >= (len(poller.syncs) - settings.burst - 1) / settings.qps


def test_a_task_still_queued_is_not_enqueued_again_at_a_resync() -> None:
    """in_memory_auto_refresh.go ``enqueueBatches`` skips a task ``inProcessing``: with one slow worker
    and resyncs faster than it, the queue still holds each task at most once. (A task queued for longer
    than five resyncs is enqueued again: here each waits at most three GetTasks, 0.15 s < 5 * 0.05 s.)"""
    from propeller_polling import PollingSettings  # noqa: PLC0415

    settings = PollingSettings(workers=1, qps=1000.0, burst=100, resync_seconds=0.05, timeout_seconds=1.0)

    async def get(key: object, deadline: float) -> bool:
        await asyncio.sleep(0.05)
        return True

    keys = ["a", "b", "c"]
    poller, _ = _poll(keys, get, settings, 0.4)
    assert poller.max_queued <= len(keys)
    # FIFO: the one worker takes the tasks in turn.
    order = [s.key for s in sorted(poller.syncs, key=lambda s: s.started)]
    assert order[:6] == keys + keys, order


def test_the_status_age_is_the_interval_between_answered_gettasks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _latency_benchmark(monkeypatch)
    from propeller_polling import Sync  # noqa: PLC0415

    class Quiet:
        max_in_flight = 1
        max_queued = 2

    class NoWindow:
        def summary(self) -> str:
            return "window"

        def server(self, task_type: str) -> str:
            return f"server-{task_type}"

    syncs = [
        Sync(("batch", 0), 0.0, 0.01, True),
        Sync(("batch", 0), 30.0, 30.02, False),  # an error refreshes nothing
        Sync(("batch", 0), 60.0, 60.01, True),
        Sync(("batch", 1), 1.0, 1.01, True),
    ]
    bench._report("label", syncs, {"batch": 2, "codeweave": 1}, NoWindow(), Quiet())
    out = capsys.readouterr().out
    assert "batch: calls=4 " in out and "errors=1 " in out
    assert "status_age_p50_s=60.0 status_age_p99_s=60.0 status_age_max_s=60.0 refreshed_twice=1/2" in out
    assert "codeweave: calls=0" in out
    # The service's own latency stands next to the worker's, per backend.
    assert "max_ms=20.0 server-batch errors=1 " in out and "server-codeweave" in out
    assert "window max_in_flight=1 max_queued=2" in out


def test_the_server_side_quantiles_are_prometheus_histogram_quantile(monkeypatch: pytest.MonkeyPatch) -> None:
    """prometheus/prometheus promql/quantile.go ``bucketQuantile`` (01381a80): linear within the
    bucket holding rank q * count, from 0 below the lowest bound; the highest finite bound for a rank
    in +Inf's bucket; NaN with no observation."""
    import math  # noqa: PLC0415

    bench = _latency_benchmark(monkeypatch)
    inf = math.inf
    # 10 observations under 5 ms, 10 more under 10 ms: rank 10 ends the first bucket; rank 15 is
    # halfway through the second; rank 19.8 is 98% through it.
    buckets = {0.005: 10.0, 0.01: 20.0, inf: 20.0}
    assert bench.histogram_quantile(0.5, buckets) == pytest.approx(0.005)
    assert bench.histogram_quantile(0.75, buckets) == pytest.approx(0.0075)
    assert bench.histogram_quantile(0.99, buckets) == pytest.approx(0.0099)
    assert bench.histogram_quantile(0.25, buckets) == pytest.approx(0.0025)  # from 0 in the lowest bucket
    assert bench.histogram_quantile(0.99, {0.005: 1.0, 0.01: 1.0, inf: 10.0}) == 0.01  # in +Inf's bucket
    assert math.isnan(bench.histogram_quantile(0.5, {0.005: 0.0, inf: 0.0}))


def test_the_benchmarks_channel_round_robins_the_replicas_with_propellers_deadline(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Propeller's connector client dials the Service with ``DefaultServiceConfig`` (``round_robin``,
    flyteplugins/v1.16.8 ``go/tasks/plugins/webapi/connector/config.go``): the benchmark's grpc.aio
    channel spreads GetTasks over every replica, each with the deadline it was given, and an RPC
    error counts as an unanswered GetTask. Two in-process gRPC servers stand in for the replicas."""
    from types import SimpleNamespace  # noqa: PLC0415

    import grpc  # noqa: PLC0415
    from flyteidl.admin import agent_pb2  # noqa: PLC0415
    from flyteidl.service import agent_pb2_grpc  # noqa: PLC0415

    bench = _latency_benchmark(monkeypatch)

    class Replica(agent_pb2_grpc.AsyncAgentServiceServicer):
        def __init__(self) -> None:
            self.remaining: list[float] = []

        async def GetTask(self, request, context):
            self.remaining.append(context.time_remaining())
            if request.resource_meta == b"broken":
                await context.abort(grpc.StatusCode.INTERNAL, "broken")
            return agent_pb2.GetTaskResponse()

    async def measure():
        replicas, servers, targets = [Replica(), Replica()], [], []
        for replica in replicas:
            server = grpc.aio.server()
            agent_pb2_grpc.add_AsyncAgentServiceServicer_to_server(replica, server)
            targets.append(SimpleNamespace(target=f"127.0.0.1:{server.add_insecure_port('127.0.0.1:0')}"))
            await server.start()
            servers.append(server)
        service = bench.Service(targets)
        try:
            await service.channel.channel_ready()
            answered = [await service.get("cdao-aws-batch", b"meta", 5.0) for _ in range(20)]
            broken = await service.get("cdao-aws-batch", b"broken", 5.0)
        finally:
            await service.close()
            for server in servers:
                await server.stop(None)
        return replicas, answered, broken

    replicas, answered, broken = _run(measure())
    assert all(answered) and broken is False
    calls = [len(r.remaining) for r in replicas]
    assert sum(calls) == 21 and min(calls) >= 5, calls
    # The deadline travels as the grpc-timeout header, which gRPC rounds up a little
    # (https://github.com/grpc/grpc/blob/master/doc/PROTOCOL-HTTP2.md: "Timeout").
    assert all(4.5 < left <= 5.1 for r in replicas for left in r.remaining), [r.remaining for r in replicas]
