"""GetTask driven the way propeller drives it, with many tasks in flight per backend, healthy and
while Codeweave hangs; and, separately, what the connector service sustains per CPU second.

    uv run python plugins/benchmarks/get_task_latency.py --tasks 1000 [--replicas 2]

Starts ``--replicas`` connector service processes (``pyflyte serve connector``, as the Deployment runs
it) and moto and the Codeweave fake on 127.0.0.1 in a child process (``--backends process``, the
default) or in this one (``--backends in-process``: they then share this interpreter's GIL with the
polling, which adds their waits to the measured tail). Puts ``--tasks`` running jobs in each
backend (AWS Batch via CreateTask; EMR steps, on as many clusters as EMR's 256 active steps a
cluster need, EMR Serverless job runs, SageMaker transform, training and processing jobs via
boto3; Codeweave jobs in the fake), then restarts the replicas, so that no
replica holds a status read while moto still had a job finished and every backend's first pass is a
first sight. Then, in order:

1. ``propeller``: every task polled as propeller's connector plugin polls it
   (``tests/plugins/support/propeller_polling.py``, which cites flyteplugins/v1.16.8): one queue for
   every task type, ``webApi.caching.workers`` callers, a ``webApi.readRateLimiter`` token bucket, every
   task re-enqueued each ``resyncInterval``, each GetTask with the ``defaultTimeout`` deadline, all read
   from platform/addons/flyte/flyte-core/values.yaml (connector/config.go's defaults for unset keys;
   ``--workers/--qps/--burst/--resync`` try others), over one gRPC channel that round-robins the
   replicas as propeller's does. The callers are coroutines on one asyncio event loop over a
   ``grpc.aio`` channel, not threads: 200 threads blocked in gRPC calls queue for this
   interpreter's GIL, and that queueing, not the service, made the tail. Reported for the first
   pass (every task once, as after a restart of every replica) and, once every replica has been
   asked for every task directly, for ``--duration`` seconds of steady polling (default three resync
   intervals; a window shorter than one resync interval polls nothing after the first pass).
2. ``background refresh``: ``--idle`` seconds with nothing polling: the service CPU the replicas'
   background status passes cost (``CDAO_*_STATUS_REFRESH_SECONDS``, the Deployment's by default).
3. ``capacity (closed loop)``: NOT propeller's load. ``--capacity-callers`` coroutines call GetTask
   back to back over one backend's tasks; GetTasks per second and per service CPU second (less the
   background CPU of step 2): what sizes propeller's read rate limiter.
4. ``propeller, Codeweave hanging``: the fake accepts requests and never answers, and step 1 again.

Each report has a line for the window: the service's side (``service_cpu_ms_per_s`` over every
replica; ``inline_waits``: GetTasks that waited for the backend, the ``cdao_status_inline_refreshes``
counter; ``stale``: answers of a last known status older than its bound,
``cdao_status_stale_answers``; ``service_loop_lag_p50_ms/p99_ms``: how late the replicas' event
loops ran what was ready, from their ``cdao_event_loop_lag_seconds``, the wait of a GetTask before
its handler starts), then the harness's own cost, so that its queueing can be told from the
service's latency: ``harness_cpu_ms_per_s`` (this process's CPU: the poller and the gRPC client, and
with ``--backends in-process`` moto and the fake; 1000 a second is a whole core) and
``loop_lag_p50_ms/p99_ms/max_ms`` (how late this process's event loop ran a 10 ms timer: a GetTask
answered while the loop is busy reaches its worker that much later), ``gc_pauses`` and
``gc_pause_max_ms`` (this process's garbage collections, which stop the loop; what set-up made is
frozen out of them with ``gc.freeze``); ``backends_cpu_ms_per_s`` (moto's and the fake's process:
cores taken here from the service and the harness, by servers that run elsewhere in production);
``max_in_flight`` (propeller workers busy at once) and ``max_queued`` (tasks in propeller's queue
at once). Then one line per
backend: ``p50_ms/p99_ms/max_ms``, the GetTask latency propeller's worker sees; ``server_p50_ms/
server_p99_ms`` (``server_calls``: GetTasks observed), the time the connector itself took, estimated as
PromQL's ``histogram_quantile`` does from the ``cdao_get_task_seconds`` histogram every replica
exports (summed over replicas, the window's increase; an estimate within its bucket, 1 ms to 10 s);
``errors``; and the status age propeller sees, ``status_age_*_s``: the interval between two answered
GetTasks of one task (``refreshed_twice``: tasks that had one in the window). The histogram starts
when the connector's ``get`` does, so the gap between the client's and the server's figures is
the network stack, gRPC, the service's own event loop before the connector runs (a burst of
``webApi.readRateLimiter.burst`` GetTasks at each resync queues there), and both processes' waits
for the machine's cores; the harness's part of it is the loop lag and GC pauses above. The
service's CPU per call does not depend on how busy the machine's other processes keep its cores;
the latency does. A measurement, not a test: nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import math
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Sequence
from functools import partial
from pathlib import Path
from typing import Any

import boto3
import grpc
from flyteidl.admin import agent_pb2
from flyteidl.service.agent_pb2_grpc import AsyncAgentServiceStub
from flytekitplugins.awsemrserverless.connector import EMRServerlessJobMetadata
from flytekitplugins.awssagemaker_inference.pythonic_base import PythonicJobMetadata
from moto.batch.models import batch_backends
from moto.emrserverless.models import emrserverless_backends
from moto.sagemaker.models import sagemaker_backends
from moto.server import ThreadedMotoServer

# The propeller stand-in, the fakes and the provisioning live with the tests; the benchmark reuses them.
sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "tests" / "plugins" / "support"))
import batch_tasks
from aws_setup import create_sagemaker_jobs, create_transform_jobs, provision_attempt_table, provision_batch
from benchmark_harness import Harness, closed_loop
from cdao_connectors._metrics import EVENT_LOOP_LAG_SECONDS_NAME, GET_TASK_SECONDS_NAME
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from cdao_connectors.codeweave.connector import CodeweaveJobMetadata
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_connectors.emr.connector import MAX_ACTIVE_STEPS, EMRStepMetadata
from cdao_connectors.emr.task import EMR_SERVERLESS_TASK_TYPE, EMR_SPARK_TASK_TYPE
from cdao_connectors.sagemaker.connector import BatchTransformMetadata
from cdao_connectors.sagemaker.task import (
    BATCH_TRANSFORM_TASK_TYPE,
    SAGEMAKER_PROCESSING_TASK_TYPE,
    SAGEMAKER_TRAINING_TASK_TYPE,
)
from codeweave_fake import CodeweaveFake, FakeJob
from connector_processes import REFRESH_SETTINGS, ConnectorProcess, deployment_env
from propeller import category, execution_metadata, render_task_template, serialize
from propeller_polling import DEFAULT_SERVICE_CONFIG, AutoRefreshPoller, PollingSettings, Sync

REGION = "us-east-1"
ACCOUNT = "123456789012"
API_KEY = "bench-key"


async def _batch_tasks(stub: AsyncAgentServiceStub, n: int) -> list[bytes]:
    template = serialize(batch_tasks.preprocess)
    metas = []
    for i in range(n):
        prefix = f"s3://flyte-data/metadata/bench/b{i}"
        req = agent_pb2.CreateTaskRequest(
            template=render_task_template(template, prefix).to_flyte_idl(),
            output_prefix=prefix,
            task_execution_metadata=execution_metadata("bench", node=f"b{i}"),
        )
        metas.append((await stub.CreateTask(req, timeout=60)).resource_meta)
    return metas


def _emr_tasks(n: int) -> list[bytes]:
    """``n`` running steps, spread over as few clusters as EMR allows: at most
    ``MAX_ACTIVE_STEPS`` (256) PENDING and RUNNING steps a cluster (emr/connector.py cites the EMR
    Management Guide); moto does not enforce the cap, so 1000 steps on one cluster would measure a
    load AWS refuses."""
    emr = boto3.client("emr", region_name=REGION)
    metas = []
    for first in range(0, n, MAX_ACTIVE_STEPS):
        cluster = emr.run_job_flow(
            Name=f"bench-{first // MAX_ACTIVE_STEPS}",
            ReleaseLabel="emr-7.5.0",
            Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
            JobFlowRole="EMR_EC2_DefaultRole",
            ServiceRole="EMR_DefaultRole",
        )["JobFlowId"]
        steps = [
            {"Name": f"s{j}", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}
            for j in range(first, min(n, first + MAX_ACTIVE_STEPS))
        ]
        # AddJobFlowSteps takes the cluster's whole share in one call: the cap bounds active steps, not a call's.
        for step_id in emr.add_job_flow_steps(JobFlowId=cluster, Steps=steps)["StepIds"]:
            metas.append(EMRStepMetadata(cluster, step_id, False, REGION, "s3://flyte-data/x", False).encode())
    return metas


def _transform_tasks(n: int) -> list[bytes]:
    names = [f"bench-{i}" for i in range(n)]
    create_transform_jobs(REGION, "bench", names)
    return [BatchTransformMetadata(name, REGION, f"s3://flyte-data/out/{name}").encode() for name in names]


def _serverless_tasks(n: int) -> list[bytes]:
    """Job runs of one EMR Serverless application (the stack has one; infra/components/compute.py)."""
    client = boto3.client("emr-serverless", region_name=REGION)
    app = client.create_application(name="bench", releaseLabel="emr-7.5.0", type="SPARK")["applicationId"]
    metas = []
    for i in range(n):
        run = client.start_job_run(
            applicationId=app,
            executionRoleArn=f"arn:aws:iam::{ACCOUNT}:role/emr-serverless",
            jobDriver={"sparkSubmit": {"entryPoint": "s3://flyte-data/e.py"}},
            name=f"bench-{i}",
        )
        meta = EMRServerlessJobMetadata(application_id=app, job_run_id=run["jobRunId"], region=REGION)
        metas.append(meta.encode())
    return metas


def _sagemaker_job_tasks(n: int, kind: str) -> list[bytes]:
    """Training or processing jobs as the SDK's Pythonic tasks start them; their GetTask describes one."""
    names = [f"bench-{kind}-{i}" for i in range(n)]
    create_sagemaker_jobs(REGION, kind, names)
    metas = []
    for name in names:
        metas.append(
            PythonicJobMetadata(job_name=name, output_prefix=f"s3://flyte-data/{name}", region=REGION).encode()
        )
    return metas


class Backends:
    """moto and the Codeweave fake, and the changes to their state that no API offers: the jobs are
    put in flight (moto finishes Batch and transform jobs at once) and Codeweave made to hang."""

    def __init__(self) -> None:
        # werkzeug logs every request moto serves (tens of thousands a run): CPU on the cores the
        # measured service shares, and output that buries the report.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.fake = CodeweaveFake(api_key=API_KEY, base_env={})
        self.fake.serve()
        self.codeweave_url = self.fake.url
        self.pid: int | None = None  # in this process: their CPU is the harness's

    def in_flight(self) -> None:
        for job in batch_backends[ACCOUNT][REGION]._jobs.values():
            job.status, job.job_stopped, job.job_stopped_reason = "RUNNING", False, None
        sagemaker = sagemaker_backends[ACCOUNT][REGION]
        for job in sagemaker.transform_jobs.values():
            job.transform_job_status = "InProgress"
        for job in sagemaker.training_jobs.values():
            job.training_job_status = "InProgress"
        for job in sagemaker.processing_jobs.values():
            job.processing_job_status = "InProgress"
        for runs in emrserverless_backends[ACCOUNT][REGION].job_runs.values():
            for run in runs:
                run.state = "RUNNING"

    def codeweave_jobs(self, n: int) -> list[str]:
        ids = []
        with self.fake.lock:
            for _ in range(n):
                job = FakeJob(id=uuid.uuid4().hex[:12], spec={"name": "bench"}, status="RUNNING")
                self.fake.jobs[job.id] = job
                ids.append(job.id)
        return ids

    def hang_codeweave(self) -> None:
        self.fake.hanging = True

    def stop(self) -> None:
        self.fake.stop()
        self.moto.stop()


def _serve_backends(conn: Any) -> None:
    """The child process of ``--backends process``: runs :class:`Backends`' methods on request."""
    backends = Backends()
    conn.send((backends.endpoint, backends.codeweave_url))
    while True:
        method, args = conn.recv()
        if method == "stop":
            backends.stop()
            conn.send(None)
            return
        conn.send(getattr(backends, method)(*args))


class RemoteBackends:
    """:class:`Backends` in a child process, so that they do not share this one's interpreter."""

    def __init__(self) -> None:
        context = multiprocessing.get_context("spawn")
        self._conn, child = context.Pipe()
        self._process = context.Process(target=_serve_backends, args=(child,), daemon=True)
        self._process.start()
        self.endpoint, self.codeweave_url = self._conn.recv()
        self.pid = self._process.pid

    def _call(self, method: str, *args: Any) -> Any:
        self._conn.send((method, args))
        return self._conn.recv()

    def in_flight(self) -> None:
        self._call("in_flight")

    def codeweave_jobs(self, n: int) -> list[str]:
        return self._call("codeweave_jobs", n)

    def hang_codeweave(self) -> None:
        self._call("hang_codeweave")

    def stop(self) -> None:
        self._call("stop")
        self._process.join(10)


def _codeweave_tasks(backends: Backends | RemoteBackends, n: int) -> list[bytes]:
    return [CodeweaveJobMetadata(i, "s3://flyte-data/x", False).encode() for i in backends.codeweave_jobs(n)]


def _percentile(values: list[float], q: int) -> float:
    if len(values) == 1:
        return values[0]
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1]


def histogram_quantile(q: float, buckets: dict[float, float]) -> float:
    """The ``q``-quantile (0..1) of a Prometheus histogram's cumulative bucket counts by upper bound
    (``+Inf`` included), as PromQL's ``histogram_quantile`` estimates it (prometheus/prometheus
    ``promql/quantile.go`` ``bucketQuantile`` at 01381a80115bde3f6dbb392123980d0bfadf49af): linear
    within the bucket that holds rank ``q * count``, from 0 in the lowest bucket; the highest finite
    bound when the rank falls in ``+Inf``'s; NaN with no observation. Hand-written: prometheus_client
    exposes and parses histograms but computes no quantile."""
    bounds = sorted(buckets)
    if not bounds or not math.isinf(bounds[-1]) or buckets[bounds[-1]] <= 0:
        return math.nan
    counts = [buckets[b] for b in bounds]
    rank = q * counts[-1]
    b = next(i for i, count in enumerate(counts) if count >= rank)
    if b == len(bounds) - 1:
        return bounds[-2] if len(bounds) > 1 else math.nan
    start, below = (bounds[b - 1], counts[b - 1]) if b > 0 else (0.0, 0.0)
    in_bucket = counts[b] - below
    return start + (bounds[b] - start) * ((rank - below) / in_bucket if in_bucket else 0.0)


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux ``/proc/<pid>/stat`` utime and stime,
    fields 14 and 15, in clock ticks; proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Service:
    """The connector service's replicas, as propeller's channel reaches them: one gRPC channel over
    every replica's address with the connector plugin's ``DefaultServiceConfig`` (``round_robin``: each
    call goes to the next replica), as its ``k8s://`` resolver gives it the Service's endpoints.
    The channel is ``grpc.aio``'s, on the running event loop: create it inside that loop."""

    def __init__(self, replicas: Sequence[ConnectorProcess], backends_pid: int | None = None) -> None:
        self.replicas = list(replicas)
        self.backends_pid = backends_pid  # moto's and the fake's process, when they have their own
        addresses = ",".join(r.target for r in replicas)
        # gRPC's ipv4: scheme lists several addresses (https://github.com/grpc/grpc/blob/master/doc/naming.md).
        self.channel = grpc.aio.insecure_channel(
            f"ipv4:{addresses}", options=[("grpc.service_config", DEFAULT_SERVICE_CONFIG)]
        )
        self.stub = AsyncAgentServiceStub(self.channel)

    def cpu_seconds(self) -> float:
        return sum(_cpu_seconds(r.pid) for r in self.replicas)

    def scrape(self) -> Scrape:
        """Every replica's counters and GetTask histogram, summed (blocking: run it off the loop)."""
        histogram: dict[str, dict[float, float]] = {}
        loop_lag: dict[float, float] = {}
        for replica in self.replicas:
            for task_type, buckets in replica.histogram(GET_TASK_SECONDS_NAME, "task_type").items():
                mine = histogram.setdefault(task_type, {})
                for bound, count in buckets.items():
                    mine[bound] = mine.get(bound, 0.0) + count
            for bound, count in replica.histogram(EVENT_LOOP_LAG_SECONDS_NAME).get("", {}).items():
                loop_lag[bound] = loop_lag.get(bound, 0.0) + count
        return Scrape(
            at=time.monotonic(),
            service_cpu=self.cpu_seconds(),
            harness_cpu=time.process_time(),
            backends_cpu=_cpu_seconds(self.backends_pid) if self.backends_pid is not None else None,
            inline=sum(r.counter("cdao_status_inline_refreshes") for r in self.replicas),
            stale=sum(r.counter("cdao_status_stale_answers") for r in self.replicas),
            histogram=histogram,
            loop_lag=loop_lag,
        )

    async def get(self, task_type: str, meta: bytes, timeout: float) -> bool:
        """Whether a GetTask answered within ``timeout`` seconds (an RPC error is propeller's sync error)."""
        req = agent_pb2.GetTaskRequest(task_category=category(task_type), resource_meta=meta)
        return await _answered(self.stub, req, timeout)

    async def close(self) -> None:
        await self.channel.close()


async def _answered(stub: AsyncAgentServiceStub, request: agent_pb2.GetTaskRequest, timeout: float) -> bool:
    try:
        await stub.GetTask(request, timeout=timeout)
        return True
    except grpc.RpcError:
        return False


class Scrape:
    """What the service and this process had spent, and what the replicas had counted, at ``at``."""

    def __init__(
        self,
        *,
        at: float,
        service_cpu: float,
        harness_cpu: float,
        backends_cpu: float | None,
        inline: float,
        stale: float,
        histogram: dict[str, dict[float, float]],
        loop_lag: dict[float, float],
    ) -> None:
        self.at, self.service_cpu, self.harness_cpu, self.backends_cpu = at, service_cpu, harness_cpu, backends_cpu
        self.inline, self.stale, self.histogram, self.loop_lag = inline, stale, histogram, loop_lag


class Window:
    """A measurement window: the service's CPU and counters, the GetTask histogram of every replica,
    and this harness process's own CPU and event-loop lag between :meth:`open` and :meth:`close`."""

    def __init__(self, first: Scrape, last: Scrape, lag: list[float], gc_pauses: list[float]) -> None:
        self.first, self.last, self._lag, self._gc = first, last, lag, gc_pauses
        self.started, self.ended = first.at, last.at

    @staticmethod
    async def open(service: Service) -> Scrape:
        return await asyncio.to_thread(service.scrape)

    @classmethod
    async def close(cls, service: Service, first: Scrape, harness: Harness) -> Window:
        last = await asyncio.to_thread(service.scrape)
        return cls(first, last, harness.lag.between(first.at, last.at), harness.gc.between(first.at, last.at))

    @property
    def seconds(self) -> float:
        return max(self.ended - self.started, 1e-9)

    def service_cpu_seconds(self) -> float:
        return self.last.service_cpu - self.first.service_cpu

    def summary(self) -> str:
        """The service's CPU and counters and how late the replicas' event loops ran what was ready
        (``service_loop_lag_*_ms``, from every replica's ``cdao_event_loop_lag_seconds``: time a
        GetTask spends before its handler starts, which ``server_*_ms`` does not hold), then the
        harness's own cost: its process's CPU (``harness_cpu_ms_per_s``: the poller, the gRPC
        client, and with ``--backends in-process`` moto and the fake) and how late its event loop
        ran a timer (``loop_lag_*_ms``); and the CPU moto and the Codeweave fake took in their own
        process (``backends_cpu_ms_per_s``), cores the service and the harness wait for on this
        machine but not in production, where AWS's and Codeweave's servers run elsewhere."""
        before = self.first.loop_lag
        service_lag = {b: c - before.get(b, 0.0) for b, c in self.last.loop_lag.items()}
        service_loop = (
            f"service_loop_lag_p50_ms={1000 * histogram_quantile(0.5, service_lag):.1f} "
            f"service_loop_lag_p99_ms={1000 * histogram_quantile(0.99, service_lag):.1f}"
        )
        lag = (
            f"loop_lag_p50_ms={1000 * _percentile(self._lag, 50):.1f} "
            f"loop_lag_p99_ms={1000 * _percentile(self._lag, 99):.1f} loop_lag_max_ms={1000 * max(self._lag):.1f}"
            if self._lag
            else "loop_lag=unmeasured"
        )
        gc_pauses = f"gc_pauses={len(self._gc)} gc_pause_max_ms={1000 * max(self._gc, default=0.0):.1f}"
        return (
            f"seconds={self.seconds:.0f} service_cpu_ms_per_s={1000 * self.service_cpu_seconds() / self.seconds:.0f} "
            f"inline_waits={self.last.inline - self.first.inline:.0f} stale={self.last.stale - self.first.stale:.0f} "
            f"{service_loop} "
            f"harness_cpu_ms_per_s={1000 * (self.last.harness_cpu - self.first.harness_cpu) / self.seconds:.0f} "
            f"{lag} {gc_pauses} {self._backends_cpu()} load_avg={os.getloadavg()[0]:.1f}"
        )

    def _backends_cpu(self) -> str:
        if self.first.backends_cpu is None or self.last.backends_cpu is None:
            return "backends_cpu=in-harness"
        return f"backends_cpu_ms_per_s={1000 * (self.last.backends_cpu - self.first.backends_cpu) / self.seconds:.0f}"

    def server(self, task_type: str) -> str:
        """The service's own GetTask latency for ``task_type`` in the window, from the replicas'
        ``cdao_get_task_seconds`` histogram (PromQL's estimate, bounded by the buckets)."""
        before = self.first.histogram.get(task_type, {})
        delta = {b: c - before.get(b, 0.0) for b, c in self.last.histogram.get(task_type, {}).items()}
        observed = delta.get(math.inf, 0.0)
        if observed <= 0:
            return "server_calls=0"
        return (
            f"server_calls={observed:.0f} server_p50_ms={1000 * histogram_quantile(0.5, delta):.1f} "
            f"server_p99_ms={1000 * histogram_quantile(0.99, delta):.1f}"
        )


def _report(label: str, syncs: list[Sync], keys: dict[str, int], window: Window, poller: AutoRefreshPoller) -> None:
    """Per backend: GetTask latency as propeller's worker sees it and as the service measured it,
    errors, and the status age propeller sees (the interval between two answered GetTasks of one
    task); ``refreshed_twice``: tasks with such an interval."""
    print(
        f"{label}: {window.summary()} max_in_flight={poller.max_in_flight} max_queued={poller.max_queued}",
        flush=True,
    )
    for task_type, total in keys.items():
        mine = [s for s in syncs if s.key[0] == task_type]
        if not mine:
            print(f"  {task_type}: calls=0 (never polled in this window) {window.server(task_type)}", flush=True)
            continue
        latencies = [s.ended - s.started for s in mine]
        answered: dict[Any, list[float]] = {}
        for s in mine:
            if s.ok:
                answered.setdefault(s.key, []).append(s.ended)
        ages = [b - a for ends in answered.values() for a, b in zip(sorted(ends), sorted(ends)[1:], strict=False)]
        age = (
            f"status_age_p50_s={_percentile(ages, 50):.1f} status_age_p99_s={_percentile(ages, 99):.1f} "
            f"status_age_max_s={max(ages):.1f}"
            if ages
            else "status_age=never-refreshed-twice"
        )
        twice = sum(1 for ends in answered.values() if len(ends) > 1)
        print(
            f"  {task_type}: calls={len(mine)} p50_ms={1000 * _percentile(latencies, 50):.1f} "
            f"p99_ms={1000 * _percentile(latencies, 99):.1f} max_ms={1000 * max(latencies):.1f} "
            f"{window.server(task_type)} errors={sum(not s.ok for s in mine)} {age} refreshed_twice={twice}/{total}",
            flush=True,
        )


async def _poll_as_propeller(
    service: Service,
    tasks: dict[str, list[bytes]],
    settings: PollingSettings,
    duration: float,
    label: str,
    *,
    harness: Harness,
    prime: bool = True,
) -> None:
    """Drive every task's GetTask as propeller's webapi cache does (:class:`AutoRefreshPoller`):
    report the first pass (every task once) and, once every replica knows every task (``prime``:
    asked directly; without it, they already do), ``duration`` seconds of steady polling."""
    counts = {task_type: len(metas) for task_type, metas in tasks.items()}
    # Interleaved, as tasks of every type are launched over time in production (the queue is FIFO).
    keys = [(t, i) for i in range(max(counts.values())) for t in tasks if i < counts[t]]

    async def get(key: tuple[str, int], deadline: float) -> bool:
        return await service.get(key[0], tasks[key[0]][key[1]], deadline)

    poller = AutoRefreshPoller(keys, get, settings)
    first_scrape = await Window.open(service)
    poller.start()
    try:
        first_pass_limit = len(keys) / settings.qps + 2 * settings.timeout_seconds + 60
        while len({s.key for s in poller.syncs_between(first_scrape.at, time.monotonic())}) < len(keys):
            if time.monotonic() - first_scrape.at > first_pass_limit:
                break
            await asyncio.sleep(0.5)
        window = await Window.close(service, first_scrape, harness)
        first: dict[Any, Sync] = {}
        for s in poller.syncs_between(window.started, window.ended):
            first.setdefault(s.key, s)
        _report(f"{label}, first pass", list(first.values()), counts, window, poller)
        # Round robin sends a task's later GetTasks to other replicas, each its first sight there;
        # the steady state starts once every replica knows every task.
        if prime:
            await _prime(service, tasks, 32, settings.timeout_seconds)
        steady_scrape = await Window.open(service)
        await asyncio.sleep(duration)
        steady = await Window.close(service, steady_scrape, harness)
        _report(f"{label}, steady", poller.syncs_between(steady.started, steady.ended), counts, steady, poller)
    finally:
        await poller.stop()


async def _prime(service: Service, tasks: dict[str, list[bytes]], callers: int, timeout: float) -> None:
    """Ask every replica directly, once, for every task (unmeasured), so that each knows them all,
    as every replica does once propeller's round robin has reached it with each task."""
    for task_type, metas in tasks.items():
        requests = [agent_pb2.GetTaskRequest(task_category=category(task_type), resource_meta=m) for m in metas]
        for replica in service.replicas:
            async with grpc.aio.insecure_channel(replica.target) as channel:
                stub = AsyncAgentServiceStub(channel)
                await closed_loop([partial(_answered, stub, r, timeout) for r in requests], callers)


async def _capacity(
    service: Service,
    tasks: dict[str, list[bytes]],
    callers: int,
    timeout: float,
    *,
    background_cpu_per_s: float,
    harness: Harness,
) -> None:
    """Closed loop, NOT propeller's load: ``callers`` coroutines call GetTask back to back over every
    task of one backend; GetTasks per second, and per second of service CPU, both as measured
    (``get_tasks_per_cpu_s``) and less the background passes' CPU of the idle window
    (``net_of_background``): what sizes propeller's read rate limiter. Every replica is first
    asked once for every task, directly and unmeasured, so that steady GetTasks are measured rather
    than a replica's first sight of a task."""
    for task_type, metas in tasks.items():
        await _prime(service, {task_type: metas}, callers, timeout)
        first = await Window.open(service)

        async def call(meta: bytes, task_type: str = task_type) -> tuple[float, bool]:
            start = time.monotonic()
            ok = await service.get(task_type, meta, timeout)
            return time.monotonic() - start, ok

        results = await closed_loop([lambda m=m: call(m) for m in metas], callers)
        window = await Window.close(service, first, harness)
        latencies = [took for took, _ in results]
        cpu = window.service_cpu_seconds()
        net_cpu = cpu - background_cpu_per_s * window.seconds
        net = f"{len(metas) / net_cpu:.0f}" if net_cpu > 0 else "n/a"
        print(
            f"capacity (closed loop, {callers} callers) {task_type}: "
            f"get_tasks_per_s={len(metas) / window.seconds:.0f} "
            f"get_tasks_per_cpu_s={len(metas) / max(cpu, 1e-9):.0f} net_of_background={net} "
            f"p50_ms={1000 * _percentile(latencies, 50):.1f} p99_ms={1000 * _percentile(latencies, 99):.1f} "
            f"{window.server(task_type)} errors={sum(not ok for _, ok in results)} {window.summary()}",
            flush=True,
        )


def _arguments(argv: list[str] | None) -> tuple[argparse.Namespace, PollingSettings, dict[str, str]]:
    """The command line; propeller's polling settings and the replicas' refresh settings default to
    what platform/ deploys (flyte-core values.yaml, the connector Deployment)."""
    polling = PollingSettings.from_values()
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in flight per backend")
    parser.add_argument("--replicas", type=int, default=1, help="connector service processes (round robin)")
    parser.add_argument("--duration", type=float, default=None, help="seconds of each steady window (3 resyncs)")
    parser.add_argument("--idle", type=float, default=20.0, help="seconds of the background-refresh CPU window")
    parser.add_argument("--capacity-callers", type=int, default=32, help="closed-loop callers of the capacity run")
    parser.add_argument("--workers", type=int, default=polling.workers, help="webApi.caching.workers")
    parser.add_argument("--qps", type=float, default=polling.qps, help="webApi.readRateLimiter.qps")
    parser.add_argument("--burst", type=int, default=polling.burst, help="webApi.readRateLimiter.burst")
    parser.add_argument("--resync", type=float, default=polling.resync_seconds, help="webApi.caching.resyncInterval")
    parser.add_argument(
        "--refresh-seconds",
        type=float,
        default=None,
        help="CDAO_STATUS_REFRESH_SECONDS and CDAO_BATCH_STATUS_REFRESH_SECONDS (default: the Deployment's)",
    )
    parser.add_argument(
        "--backends",
        choices=("process", "in-process"),
        default="process",
        help="run moto and the Codeweave fake in a child process or in this one",
    )
    args = parser.parse_args(argv)
    numbers = (args.tasks, args.replicas, args.capacity_callers, args.workers, args.qps, args.burst, args.resync)
    if min(numbers) <= 0 or (args.duration is not None and args.duration <= 0) or args.idle < 0:
        parser.error("every count, rate and duration must be > 0 (--idle >= 0)")
    if args.duration is None:
        args.duration = 3 * args.resync
    settings = PollingSettings(args.workers, args.qps, args.burst, args.resync, polling.timeout_seconds)
    if args.refresh_seconds is not None:
        refresh = dict.fromkeys(REFRESH_SETTINGS, f"{args.refresh_seconds:g}")
    else:
        refresh = deployment_env(REFRESH_SETTINGS)
    return args, settings, refresh


def main(argv: list[str] | None = None) -> int:
    args, settings, refresh = _arguments(argv)
    return asyncio.run(_measure(args, settings, refresh))


async def _measure(args: argparse.Namespace, settings: PollingSettings, refresh: dict[str, str]) -> int:
    backends = RemoteBackends() if args.backends == "process" else Backends()
    endpoint = backends.endpoint
    secrets = tempfile.mkdtemp(prefix="bench-secrets-")
    Path(secrets, "codeweave_api_key").write_text(API_KEY)
    os.environ.update(
        {
            "AWS_ENDPOINT_URL": endpoint,
            "AWS_ACCESS_KEY_ID": "bench",
            "AWS_SECRET_ACCESS_KEY": "bench",
            "AWS_REGION": REGION,
            "AWS_DEFAULT_REGION": REGION,
            "CDAO_AWS_REGION": REGION,
            # The stack the connector names and tags its job definitions and clusters by (cdao_connectors.config).
            "CDAO_STACK": "bench",
            "FLYTE_AWS_ENDPOINT": endpoint,
            "FLYTE_AWS_ACCESS_KEY_ID": "bench",
            "FLYTE_AWS_SECRET_ACCESS_KEY": "bench",
            "FLYTE_SECRETS_DEFAULT_DIR": secrets,
        }
    )
    boto3.client("s3", region_name=REGION).create_bucket(Bucket="flyte-data")
    env = {
        **provision_batch(endpoint, REGION),
        **provision_attempt_table(REGION),
        "CDAO_CODEWEAVE_ENDPOINT": backends.codeweave_url,
        **refresh,
    }
    replicas = [ConnectorProcess(env) for _ in range(args.replicas)]
    service: Service | None = None
    harness = Harness().start()
    try:
        for replica in replicas:
            replica.wait_ready()
        service = Service(replicas, backends.pid)
        tasks = {
            BATCH_TASK_TYPE: await _batch_tasks(service.stub, args.tasks),
            EMR_SPARK_TASK_TYPE: _emr_tasks(args.tasks),
            BATCH_TRANSFORM_TASK_TYPE: _transform_tasks(args.tasks),
            CODEWEAVE_TASK_TYPE: _codeweave_tasks(backends, args.tasks),
            EMR_SERVERLESS_TASK_TYPE: _serverless_tasks(args.tasks),
            SAGEMAKER_TRAINING_TASK_TYPE: _sagemaker_job_tasks(args.tasks, "training"),
            SAGEMAKER_PROCESSING_TASK_TYPE: _sagemaker_job_tasks(args.tasks, "processing"),
        }
        backends.in_flight()
        # Restarted once every job is in flight: the replicas that created the Batch jobs tracked them
        # while moto had them SUCCEEDED, and a terminal status is cached for good, so every later
        # Batch GetTask would have answered an ended job (its outputs check), not a running one. New
        # replicas also make the first pass a real restart for every backend alike.
        await service.close()
        service, stopping = None, list(replicas)
        replicas.clear()
        for replica in stopping:
            replica.stop()
        replicas.extend(ConnectorProcess(env) for _ in range(args.replicas))
        for replica in replicas:
            replica.wait_ready()
        service = Service(replicas, backends.pid)
        harness.freeze_setup()
        total = sum(len(m) for m in tasks.values())
        print(
            f"{args.tasks} tasks in flight per backend ({total} in all), {args.replicas} connector replica(s), "
            f"{' '.join(f'{k}={v}' for k, v in refresh.items())}; propeller: workers={settings.workers} "
            f"qps={settings.qps:g} burst={settings.burst} resync_s={settings.resync_seconds:g} "
            f"timeout_s={settings.timeout_seconds:g} (a pass over every task takes >= "
            f"{max(0.0, total - settings.burst) / settings.qps:.0f} s); backends {args.backends}; "
            f"loop lag sampled every {1000 * harness.lag.interval:g} ms",
            flush=True,
        )
        await _poll_as_propeller(service, tasks, settings, args.duration, "propeller", harness=harness)

        # Nothing polls: what is left is the background refresh passes over every tracked task.
        idle_scrape = await Window.open(service)
        await asyncio.sleep(args.idle)
        idle = await Window.close(service, idle_scrape, harness)
        print(
            f"background refresh, nothing polling: {idle.summary()} "
            f"(service CPU for {total} tracked tasks on {args.replicas} replica(s))",
            flush=True,
        )
        background = idle.service_cpu_seconds() / idle.seconds
        await _capacity(
            service,
            tasks,
            args.capacity_callers,
            settings.timeout_seconds,
            background_cpu_per_s=background,
            harness=harness,
        )

        backends.hang_codeweave()
        # Every replica knows every task by now (the capacity run asked each of them directly).
        await _poll_as_propeller(
            service, tasks, settings, args.duration, "propeller, Codeweave hanging", harness=harness, prime=False
        )
        return 0
    finally:
        await harness.stop()
        if service is not None:
            await service.close()
        for replica in replicas:
            replica.stop()
        backends.stop()


if __name__ == "__main__":
    sys.exit(main())
