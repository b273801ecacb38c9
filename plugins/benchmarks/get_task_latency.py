"""GetTask latency with many tasks in flight per backend, and Batch's while Codeweave hangs.

    uv run python plugins/benchmarks/get_task_latency.py --tasks 1000

Starts the connector service as its own ``pyflyte serve connector`` process (as the Deployment
runs it), and moto and the Codeweave fake on 127.0.0.1 in another child process (``--backends
process``, the default) or in this one (``--backends in-process``): in-process, the stand-ins for
AWS and Codeweave share an interpreter (and its GIL) with the ``--workers`` polling threads, which
adds their waits to the measured tail; comparing the two shows how much.

Puts ``--tasks`` running jobs in each backend (AWS Batch via CreateTask; EMR steps, EMR Serverless
job runs, SageMaker transform, training and processing jobs via boto3; Codeweave jobs in the fake),
then polls every task once (``first sight``: the connector has not seen it, as after a restart)
and then ``--rounds`` times from ``--workers`` concurrent callers, each GetTask with propeller's
deadline (10 s). Then makes Codeweave hang (requests accepted, never answered) and polls Batch again while ``--workers``
callers keep polling Codeweave. Prints one line per measurement: ``<backend>: p50_ms=..
p99_ms=.. max_ms=.. service_cpu_ms_per_call=.. errors=.. inline_waits=.. stale=.. load_avg=..``
(``inline_waits``: GetTasks that waited for the backend, from the service's
``cdao_status_inline_refreshes`` Prometheus counter; ``stale``: answered a last known status older
than the refresh bound, ``cdao_status_stale_answers``; Codeweave has no batched read, so every
Codeweave GetTask waits for it by design); the service's CPU time
per GetTask (the hammering Codeweave callers included, in the last line) does not depend on how
busy the machine's other processes keep its cores, the latency does. A measurement, not a test:
nothing here passes or fails on time.
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
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
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from cdao_connectors.codeweave.connector import CodeweaveJobMetadata
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_connectors.emr.connector import EMRStepMetadata
from cdao_connectors.emr.task import EMR_SERVERLESS_TASK_TYPE, EMR_SPARK_TASK_TYPE
from cdao_connectors.sagemaker.connector import BatchTransformMetadata
from cdao_connectors.sagemaker.task import (
    BATCH_TRANSFORM_TASK_TYPE,
    SAGEMAKER_PROCESSING_TASK_TYPE,
    SAGEMAKER_TRAINING_TASK_TYPE,
)
from codeweave_fake import CodeweaveFake, FakeJob
from connector_processes import ConnectorProcess
from propeller import category, execution_metadata, render_task_template, serialize

REGION = "us-east-1"
ACCOUNT = "123456789012"
API_KEY = "bench-key"
GET_TASK_DEADLINE = 10.0  # platform/addons/flyte/flyte-core/values.yaml


def _batch_tasks(stub, n: int) -> list[bytes]:
    template = serialize(batch_tasks.preprocess)
    metas = []
    for i in range(n):
        prefix = f"s3://flyte-data/metadata/bench/b{i}"
        req = agent_pb2.CreateTaskRequest(
            template=render_task_template(template, prefix).to_flyte_idl(),
            output_prefix=prefix,
            task_execution_metadata=execution_metadata("bench", node=f"b{i}"),
        )
        metas.append(stub.CreateTask(req, timeout=60).resource_meta)
    return metas


def _emr_tasks(n: int) -> list[bytes]:
    emr = boto3.client("emr", region_name=REGION)
    cluster = emr.run_job_flow(
        Name="bench",
        ReleaseLabel="emr-7.5.0",
        Instances={"MasterInstanceType": "m5.xlarge", "InstanceCount": 1, "KeepJobFlowAliveWhenNoSteps": True},
        JobFlowRole="EMR_EC2_DefaultRole",
        ServiceRole="EMR_DefaultRole",
    )["JobFlowId"]
    metas = []
    for i in range(0, n, 200):
        steps = [
            {"Name": f"s{j}", "HadoopJarStep": {"Jar": "command-runner.jar", "Args": ["true"]}}
            for j in range(i, min(n, i + 200))
        ]
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
        self.moto = ThreadedMotoServer(ip_address="127.0.0.1", port=0, verbose=False)
        self.moto.start()
        host, port = self.moto.get_host_and_port()
        self.endpoint = f"http://{host}:{port}"
        self.fake = CodeweaveFake(api_key=API_KEY, base_env={})
        self.fake.serve()
        self.codeweave_url = self.fake.url

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


class Poller:
    def __init__(self, target: str) -> None:
        self._channel = grpc.insecure_channel(target)
        self._stub = AsyncAgentServiceStub(self._channel)

    def get(self, task_type: str, meta: bytes) -> tuple[float, bool]:
        req = agent_pb2.GetTaskRequest(task_category=category(task_type), resource_meta=meta)
        start = time.monotonic()
        try:
            self._stub.GetTask(req, timeout=GET_TASK_DEADLINE)
            ok = True
        except grpc.RpcError:
            ok = False
        return time.monotonic() - start, ok

    def rounds(self, task_type: str, metas: list[bytes], rounds: int, workers: int) -> tuple[list[float], int]:
        latencies: list[float] = []
        errors = 0
        with ThreadPoolExecutor(workers) as pool:
            for _ in range(rounds):
                for took, ok in pool.map(lambda m: self.get(task_type, m), metas):
                    latencies.append(took)
                    errors += not ok
        return latencies, errors


def _cpu_seconds(pid: int) -> float:
    """User plus system CPU time of a process so far (Linux ``/proc/<pid>/stat`` utime and stime,
    fields 14 and 15, in clock ticks; proc(5))."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


class Measured:
    """Latency, and the connector service's CPU time per call: on a machine whose cores are shared,
    the tail follows the load, while the CPU a GetTask costs the service does not."""

    def __init__(self, poller: Poller, service: ConnectorProcess, workers: int) -> None:
        self._poller = poller
        self._service = service
        self._pid = service.pid
        self._workers = workers

    def report(self, label: str, task_type: str, metas: list[bytes], rounds: int) -> None:
        cpu = _cpu_seconds(self._pid)
        inline = self._service.counter("cdao_status_inline_refreshes")
        stale = self._service.counter("cdao_status_stale_answers")
        latencies, errors = self._poller.rounds(task_type, metas, rounds, self._workers)
        cpu_ms = 1000 * (_cpu_seconds(self._pid) - cpu) / len(latencies)
        inline = self._service.counter("cdao_status_inline_refreshes") - inline
        stale = self._service.counter("cdao_status_stale_answers") - stale
        percentiles = statistics.quantiles(latencies, n=100, method="inclusive")
        print(
            f"{label}: p50_ms={1000 * percentiles[49]:.1f} p99_ms={1000 * percentiles[98]:.1f} "
            f"max_ms={1000 * max(latencies):.1f} service_cpu_ms_per_call={cpu_ms:.2f} calls={len(latencies)} "
            f"errors={errors} inline_waits={inline:.0f} stale={stale:.0f} load_avg={os.getloadavg()[0]:.1f}",
            flush=True,
        )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tasks", type=int, default=1000, help="tasks in flight per backend")
    parser.add_argument("--rounds", type=int, default=2, help="GetTasks per task")
    parser.add_argument("--workers", type=int, default=32, help="concurrent GetTask callers (propeller workers)")
    parser.add_argument(
        "--backends",
        choices=("process", "in-process"),
        default="process",
        help="run moto and the Codeweave fake in a child process or in this one",
    )
    args = parser.parse_args(argv)
    if args.tasks < 1 or args.rounds < 1 or args.workers < 1:
        parser.error("--tasks, --rounds and --workers must be >= 1")

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
        # Propeller's polling interval (flytepropeller's default resync) bounds how stale a status may be.
        "CDAO_BATCH_STATUS_REFRESH_SECONDS": "5",
        "CDAO_STATUS_REFRESH_SECONDS": "5",
    }
    service = ConnectorProcess(env)
    try:
        service.wait_ready()
        poller = Poller(service.target)
        measured = Measured(poller, service, args.workers)
        with grpc.insecure_channel(service.target) as channel:
            batch = _batch_tasks(AsyncAgentServiceStub(channel), args.tasks)
        tasks = {
            BATCH_TASK_TYPE: batch,
            EMR_SPARK_TASK_TYPE: _emr_tasks(args.tasks),
            BATCH_TRANSFORM_TASK_TYPE: _transform_tasks(args.tasks),
            CODEWEAVE_TASK_TYPE: _codeweave_tasks(backends, args.tasks),
            EMR_SERVERLESS_TASK_TYPE: _serverless_tasks(args.tasks),
            SAGEMAKER_TRAINING_TASK_TYPE: _sagemaker_job_tasks(args.tasks, "training"),
            SAGEMAKER_PROCESSING_TASK_TYPE: _sagemaker_job_tasks(args.tasks, "processing"),
        }
        backends.in_flight()
        print(
            f"{args.tasks} tasks in flight per backend, {args.workers} concurrent callers, {args.rounds} rounds, "
            f"backends {args.backends}"
        )
        for task_type, metas in tasks.items():
            # The first GetTask of a job this replica has not seen (after a restart) waits for a
            # Describe; propeller's later polls of it are the steady state. Both are reported.
            measured.report(f"{task_type} first sight", task_type, metas, 1)
            measured.report(task_type, task_type, metas, args.rounds)

        # Batch's jobs were not polled while the others were measured, as propeller would have.
        measured.report(f"{BATCH_TASK_TYPE} polled again", BATCH_TASK_TYPE, batch, 1)
        backends.hang_codeweave()
        stop = threading.Event()

        def hammer_codeweave() -> None:
            hung = Poller(service.target)
            metas = tasks[CODEWEAVE_TASK_TYPE]
            i = 0
            while not stop.is_set():
                hung.get(CODEWEAVE_TASK_TYPE, metas[i % len(metas)])
                i += 1

        hammers = [threading.Thread(target=hammer_codeweave, daemon=True) for _ in range(args.workers)]
        for t in hammers:
            t.start()
        time.sleep(2.0)  # the Codeweave calls are in and hanging
        measured.report(f"{BATCH_TASK_TYPE} while Codeweave hangs", BATCH_TASK_TYPE, batch, args.rounds)
        stop.set()
        return 0
    finally:
        service.stop()
        backends.stop()


if __name__ == "__main__":
    sys.exit(main())
