"""Batch status polling at scale: the shared-cache connector against one DescribeJobs per GetTask.

    uv run python plugins/benchmarks/batch_polling.py --jobs 1000

Starts moto in-process on 127.0.0.1 and the connector service over gRPC, submits N Batch tasks through
CreateTask, marks them RUNNABLE in moto (moto's Batch would otherwise finish them at once), then polls
every task every round with GetTask from ``--workers`` callers, as propeller's workers do (coroutines
on one event loop over ``grpc.aio``: threads would queue for the GIL this process's server and moto
also need, and add that wait to the latency). Midway it
moves a quarter of the jobs to RUNNING and records every answer that still shows the old status.
The same jobs are polled through the real connector and through a naive connector (same code, but
one DescribeJobs per GetTask). Prints per mode: AWS API calls per round, GetTask latency p50/p99
(taken while tracemalloc traces every allocation of this process, the server's included: compare the
modes with each other, not with the latency benchmark), peak traced memory, the oldest outdated answer,
how late the event loop ran a timer (``loop_lag_max_ms``); last line ``api_calls_ratio=<naive/ours>``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import time
import tracemalloc
from collections import Counter
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import grpc
from cdao_connectors import _deadlines
from cdao_connectors.aws_batch.connector import BatchConnector, BatchJobMetadata
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from flyteidl.admin import agent_pb2
from flyteidl.core.execution_pb2 import TaskExecution
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub
from flytekit.extend.backend.base_connector import ConnectorRegistry, Resource
from moto.batch.models import batch_backends
from moto.server import ThreadedMotoServer

# The propeller stand-in and the example task live with the tests; the benchmark reuses them.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "plugins" / "support"))
import batch_tasks
from aws_setup import provision_attempt_table, provision_batch
from benchmark_harness import Harness, closed_loop
from grpc_connector_server import ConnectorServer
from propeller import execution_metadata, render_task_template, serialize

REGION = "us-east-1"
ACCOUNT = "123456789012"
NAIVE_TASK_TYPE = "benchmark-naive-batch"


class NaiveBatchConnector(BatchConnector):
    """The baseline: one DescribeJobs per GetTask, same status mapping."""

    name = "Benchmark naive Batch connector"

    async def get(self, resource_meta: BatchJobMetadata, **kwargs: Any) -> Resource:
        # BulkheadConnector.get reads the status cache; the baseline replaces the whole read.
        return await self.backend.call(
            self._describe_one, resource_meta, deadline=_deadlines.GET_TASK_SECONDS, what="GetTask"
        )

    def _describe_one(self, resource_meta: BatchJobMetadata) -> Resource:
        jobs = self._client(resource_meta.region).describe_jobs(jobs=[resource_meta.job_id])["jobs"]
        return self.resource_for(jobs[0] if jobs else None, resource_meta)


@dataclass
class Polling:
    """One mode's polling run: who was seen RUNNING, and answers that were out of date."""

    metas: list[bytes]
    flipped: set[int]
    category: agent_pb2.TaskCategory
    stub: Any
    flipped_at: float | None = None
    seen_running: set[int] = field(default_factory=set)
    outdated_ages: list[float] = field(default_factory=list)

    async def poll(self, idx: int) -> float:
        start = time.monotonic()
        req = agent_pb2.GetTaskRequest(task_category=self.category, resource_meta=self.metas[idx])
        res = await self.stub.GetTask(req)
        took = time.monotonic() - start
        if idx in self.flipped and self.flipped_at is not None:
            if res.resource.phase == TaskExecution.RUNNING:
                self.seen_running.add(idx)
            else:
                self.outdated_ages.append(start - self.flipped_at)
        return took


def _set_status(job_ids: list[str], status: str) -> None:
    backend = batch_backends[ACCOUNT][REGION]
    for j in job_ids:
        job = backend._jobs[j]
        job.status, job.job_stopped, job.job_stopped_reason = status, False, None


async def _run_mode(
    args: argparse.Namespace, *, stub: Any, metas: list[bytes], ids: list[str], task_type: str, calls: Counter
) -> dict:
    _set_status(ids, "RUNNABLE")
    flip = ids[: max(1, len(ids) // 4)]
    polling = Polling(metas, set(range(len(flip))), agent_pb2.TaskCategory(name=task_type, version=0), stub)
    per_round: list[int] = []
    latencies: list[float] = []
    durations: list[float] = []
    harness = Harness().start()
    harness.freeze_setup()
    tracemalloc.start()
    began_mode = time.monotonic()
    next_start = began_mode
    for r in range(args.rounds):
        await asyncio.sleep(max(0.0, next_start - time.monotonic()))
        next_start += args.interval
        if r == args.rounds // 2:
            _set_status(flip, "RUNNING")
            polling.flipped_at = time.monotonic()
        before, began = sum(calls.values()), time.monotonic()
        latencies += await closed_loop([partial(polling.poll, i) for i in range(len(metas))], args.workers)
        per_round.append(sum(calls.values()) - before)
        durations.append(time.monotonic() - began)
    _, peak = tracemalloc.get_traced_memory()
    tracemalloc.stop()
    lag = harness.lag.between(began_mode, time.monotonic())
    await harness.stop()
    percentiles = statistics.quantiles(latencies, n=100, method="inclusive")
    return {
        "calls_per_round": statistics.mean(per_round),
        "p50_ms": 1000 * percentiles[49],
        "p99_ms": 1000 * percentiles[98],
        "peak_mib": peak / 2**20,
        "slowest_round_s": max(durations),
        "oldest_outdated_s": max(polling.outdated_ages, default=0.0),
        "never_seen": len(polling.flipped - polling.seen_running),
        "loop_lag_max_ms": 1000 * max(lag, default=0.0),
    }


async def _run_modes(args: argparse.Namespace, port: int, metas: list[bytes], calls: Counter) -> dict[str, dict]:
    """Each mode's polling over one ``grpc.aio`` channel to the in-process service."""
    ids = [json.loads(m)["job_id"] for m in metas]
    async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = AsyncAgentServiceStub(channel)
        return {
            mode: await _run_mode(args, stub=stub, metas=metas, ids=ids, task_type=task_type, calls=calls)
            for mode, task_type in (("connector", BATCH_TASK_TYPE), ("naive", NAIVE_TASK_TYPE))
        }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--interval", type=float, default=5.0, help="propeller's polling interval, seconds")
    parser.add_argument("--workers", type=int, default=16, help="concurrent GetTask callers (propeller workers)")
    args = parser.parse_args(argv)
    if args.jobs < 1 or args.rounds < 2 or args.interval <= 0:
        parser.error("--jobs must be >= 1, --rounds >= 2 and --interval > 0")

    moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
    moto.start()
    host, port = moto.get_host_and_port()
    endpoint = f"http://{host}:{port}"
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": REGION,
            "CDAO_AWS_REGION": REGION,
            # The stack the connector names and tags its job definitions by (cdao_connectors.config).
            "CDAO_STACK": "bench",
            # The connector's freshness bound is the polling interval: no answer older than that.
            "CDAO_BATCH_STATUS_REFRESH_SECONDS": str(args.interval),
        }
    )
    # Count every AWS call: clients copy the default session's event hooks when they are created.
    calls: Counter[str] = Counter()
    boto3.setup_default_session()
    boto3.DEFAULT_SESSION.events.register(
        "before-call", lambda model, **_: calls.update([f"{model.service_model.service_name}.{model.name}"])
    )
    ConnectorRegistry.register(BatchConnector(), override=True)
    ConnectorRegistry.register(NaiveBatchConnector(NAIVE_TASK_TYPE), override=True)
    # The same Batch set-up as the connector tests (queues, service role, moto's simple Batch).
    os.environ.update(provision_batch(endpoint, REGION))
    os.environ.update(provision_attempt_table(REGION))

    server = ConnectorServer().start()
    channel = grpc.insecure_channel(f"127.0.0.1:{server.port}")
    stub = AsyncAgentServiceStub(channel)
    try:
        template = serialize(batch_tasks.preprocess)
        t0 = time.monotonic()
        metas = []
        for i in range(args.jobs):
            prefix = f"s3://bench-flyte/metadata/run/n{i}"
            req = agent_pb2.CreateTaskRequest(
                template=render_task_template(template, prefix).to_flyte_idl(),
                output_prefix=prefix,
                task_execution_metadata=execution_metadata("bench", node=f"n{i}"),
            )
            metas.append(stub.CreateTask(req).resource_meta)
        print(f"submitted {args.jobs} jobs through CreateTask in {time.monotonic() - t0:.1f}s")
        # A loop of its own, not asyncio.run: that clears the thread's current event loop, which a
        # caller (tests/plugins/test_benchmarks.py runs main() in pytest's process) may rely on.
        loop = asyncio.new_event_loop()
        try:
            results = loop.run_until_complete(_run_modes(args, server.port, metas, calls))
        finally:
            loop.close()
        for mode, r in results.items():
            print(
                f"{mode:>9}: aws_api_calls_per_round={r['calls_per_round']:.1f} "
                f"get_task_p50_ms={r['p50_ms']:.2f} get_task_p99_ms={r['p99_ms']:.2f} "
                f"peak_traced_mib={r['peak_mib']:.1f} slowest_round_s={r['slowest_round_s']:.2f} "
                f"oldest_outdated_answer_s={r['oldest_outdated_s']:.2f} (interval {args.interval}s) "
                f"changes_never_seen={r['never_seen']} loop_lag_max_ms={r['loop_lag_max_ms']:.1f}"
            )
        ratio = results["naive"]["calls_per_round"] / max(results["connector"]["calls_per_round"], 1e-9)
        print(f"api_calls_ratio={ratio:.1f}")
        return 0
    finally:
        channel.close()
        server.stop()
        moto.stop()


if __name__ == "__main__":
    sys.exit(main())
