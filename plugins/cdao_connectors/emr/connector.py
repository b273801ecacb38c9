"""Backend side of EMR on EC2: a Spark step running the task's ``pyflyte-execute`` command.

The step is ``spark-submit --deploy-mode cluster`` of flytekitplugins-awsemrserverless's entrypoint
script (the maintained shim that runs ``pyflyte-execute`` inside a Spark driver and turns a user
error into a non-zero exit); YARN runs driver and executors in the task's image.
"""

from __future__ import annotations

import hashlib
import logging
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import flytekitplugins.awsemrserverless as emr_serverless_plugin
from botocore.exceptions import ClientError
from cdao_connector_resources import resource_tags
from flyteidl.core.execution_pb2 import TaskExecution
from flytekit.extend.backend.base_connector import ConnectorRegistry, Resource, ResourceMeta
from flytekit.models.literals import LiteralMap
from flytekit.models.task import TaskTemplate

from cdao_connectors._attempts import (
    CREATE_STARTED_AT,
    CREATE_WAIT_SECONDS,
    AttemptAnswers,
    AttemptLedger,
    SweepTarget,
)
from cdao_connectors._backends import Backend, BulkheadConnector, LeftRunning, create_once
from cdao_connectors._common import (
    attempt_seed,
    deterministic_name,
    log_link,
    outcome_after_exit,
    readable_execution_name,
    rendered_container,
)
from cdao_connectors._custom import config_from_custom
from cdao_connectors._status_cache import StatusCache, StatusCaches, Unreadable, refresh_period
from cdao_connectors.config import EMRConfig, attempt_table, status_refresh_seconds
from cdao_connectors.emr.task import EMR_SPARK_TASK_TYPE, EMRSpark

_log = logging.getLogger(__name__)

_ENTRYPOINT = Path(emr_serverless_plugin.__file__).with_name("_entrypoint.py")

_STEP_PHASES = {
    "PENDING": TaskExecution.QUEUED,
    "CANCEL_PENDING": TaskExecution.RUNNING,
    "RUNNING": TaskExecution.RUNNING,
    "COMPLETED": TaskExecution.SUCCEEDED,
    "CANCELLED": TaskExecution.FAILED,
    "FAILED": TaskExecution.FAILED,
    # EMR interrupts a step when its instances are lost (e.g. Spot reclamation): worth a retry.
    "INTERRUPTED": TaskExecution.RETRYABLE_FAILED,
}
_LIVE_CLUSTER_STATES = ["STARTING", "BOOTSTRAPPING", "RUNNING", "WAITING", "TERMINATING"]
# ListSteps answers StepSummaries, with the Status GetTask reads, either for at most ten step ids
# or for the cluster's steps in the given states, 50 a page (botocore emr/2009-03-31 ListSteps,
# ListStepsInput.StepIds and .Marker). A refresh pass lists each cluster's live steps (at most
# MAX_ACTIVE_STEPS, 256: 6 calls instead of 26 by id); a tracked step not among them has ended and
# is read by id (ten a call) once: a step in a terminal state never changes, so it is never asked
# again.
LIST_STEPS_IDS = 10
LIST_STEPS_PAGE = 50
# First sights (GetTasks of steps new to this replica, every step after a restart) queued together
# are read in one call of up to this many (_status_cache's readers): a cluster with more of them than
# one ListSteps by id carries is listed instead, so a full cluster's 256 new steps cost 6 calls, not
# 26 (moto 5.2.5 on 127.0.0.1, which does not enforce the cap, 1000 steps of one cluster: 0.24 s
# against 0.64 s). Readers taking a cluster's first sights in smaller parts would each list the
# whole cluster; one first sight alone (the steady state: a step created on another replica) is
# still one ListSteps by id.
FIRST_SIGHTS_PER_READ = 1000
_LIVE_STEP_STATES = ["PENDING", "CANCEL_PENDING", "RUNNING"]
# "You can have up to 256 PENDING and RUNNING steps in a cluster" (Amazon EMR Management Guide,
# "Submit work to an Amazon EMR cluster",
# https://docs.aws.amazon.com/emr/latest/ManagementGuide/emr-work-with-steps.html). Past it
# AddJobFlowSteps answers a ValidationException (HTTP 400) "Maximum number of active steps(State =
# 'Running', 'Pending' or 'Cancel_Pending') for cluster exceeded." (botocore's model lists no error
# for it; the code and message are EMR's as Yelp/mrjob tests/mock_boto3/emr.py ``_add_steps``
# records them, and gchq/sleeper pull request #4607 matches them).
MAX_ACTIVE_STEPS = 256


class StepCapReached(RuntimeError):
    """EMR refused a step: its cluster already has :data:`MAX_ACTIVE_STEPS` PENDING and RUNNING steps."""


def _is_step_cap(error: ClientError) -> bool:
    answer = error.response.get("Error", {})
    return answer.get("Code") == "ValidationException" and "Maximum number of active steps" in (
        answer.get("Message") or ""
    )


_TERMINAL_STEP_STATES = frozenset({"COMPLETED", "CANCELLED", "FAILED", "INTERRUPTED"})


def _list_steps(
    emr: Any, keys: list[tuple[str, str]], *, listing: bool = False
) -> dict[tuple[str, str], dict[str, Any] | Unreadable]:
    """The StepSummary of each (cluster id, step id) EMR knows; with ``listing``, or for a cluster
    with more of them wanted than one ListSteps by id carries, from the clusters' live steps first.
    A cluster whose ListSteps fails (an unknown cluster id is
    InvalidRequestException, https://docs.aws.amazon.com/emr/latest/APIReference/API_ListSteps.html;
    a throttled call) has its steps answered :class:`Unreadable`: the other clusters' steps are
    still refreshed (_status_cache)."""
    by_cluster: dict[str, set[str]] = defaultdict(set)
    for cluster_id, step_id in keys:
        by_cluster[cluster_id].add(step_id)
    found: dict[tuple[str, str], dict[str, Any] | Unreadable] = {}
    for cluster_id, wanted in by_cluster.items():
        try:
            found.update(_cluster_steps(emr, cluster_id, wanted, listing))
        except Exception as exc:
            found.update({(cluster_id, step_id): Unreadable(exc) for step_id in wanted})
    return found


def _cluster_steps(emr: Any, cluster_id: str, wanted: set[str], listing: bool) -> dict[tuple[str, str], dict[str, Any]]:
    found = {}
    # ceil(live / 50) pages where by id would be ceil(wanted / 10) calls: fewer as long as at least
    # a fifth of the cluster's live steps are wanted. Many first sights at once come from a restart,
    # when every live step of the connector's clusters (Flyte's tasks) is new to the replica.
    if listing or len(wanted) > LIST_STEPS_IDS:
        for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id, StepStates=_LIVE_STEP_STATES):
            for step in page["Steps"]:
                if step["Id"] in wanted:
                    found[(cluster_id, step["Id"])] = step
    rest = sorted(step_id for step_id in wanted if (cluster_id, step_id) not in found)
    for i in range(0, len(rest), LIST_STEPS_IDS):
        chunk = rest[i : i + LIST_STEPS_IDS]
        for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id, StepIds=chunk):
            for step in page["Steps"]:
                found[(cluster_id, step["Id"])] = step
    return found


@dataclass
class EMRStepMetadata(ResourceMeta):
    cluster_id: str
    step_id: str
    transient: bool
    region: str
    output_prefix: str
    has_outputs: bool


def _spark_submit_args(image: str, env: dict[str, str], spark_conf: dict[str, str]) -> list[str]:
    conf = {
        "spark.yarn.appMasterEnv.YARN_CONTAINER_RUNTIME_TYPE": "docker",
        "spark.yarn.appMasterEnv.YARN_CONTAINER_RUNTIME_DOCKER_IMAGE": image,
        "spark.executorEnv.YARN_CONTAINER_RUNTIME_TYPE": "docker",
        "spark.executorEnv.YARN_CONTAINER_RUNTIME_DOCKER_IMAGE": image,
    }
    for k, v in env.items():
        conf[f"spark.yarn.appMasterEnv.{k}"] = v
        conf[f"spark.executorEnv.{k}"] = v
    conf.update(spark_conf)
    args = ["spark-submit", "--deploy-mode", "cluster"]
    for k, v in sorted(conf.items()):
        args += ["--conf", f"{k}={v}"]
    return args


# The step states CancelSteps acts on (API_CancelSteps); every other StepState (botocore
# emr/2009-03-31) has ended or is already being cancelled.
_CANCELLABLE_STEP_STATES = frozenset({"PENDING", "RUNNING"})


def _attempt_of(
    task_template: TaskTemplate, output_prefix: str, task_execution_metadata: Any
) -> tuple[str | None, str]:
    """The cluster the attempt's step goes to (None: its own transient cluster) and the step's name
    (= that cluster's): the same for every CreateTask of the attempt, on any replica."""
    spark = config_from_custom(EMRSpark, task_template.custom, task_template.id.name)
    seed = attempt_seed(task_template, output_prefix, task_execution_metadata)
    name = deterministic_name("flyte", seed, readable_execution_name(task_execution_metadata), 256)
    return spark.cluster_id or EMRConfig.from_env().default_cluster_id, name


def _attempt_key(cluster_id: str | None, name: str) -> str:
    """The attempt's item in the attempt ledger (cdao_connectors._attempts): its transient cluster
    (``cluster_id`` None) or its step on cluster ``cluster_id``."""
    return f"emr-cluster/{name}" if cluster_id is None else f"emr-step/{cluster_id}/{name}"


class EMRConnector(BulkheadConnector):
    name = "CDAO EMR on EC2 Spark Connector"

    def __init__(self) -> None:
        super().__init__(task_type_name=EMR_SPARK_TASK_TYPE, metadata_type=EMRStepMetadata)
        self.backend = Backend("EMR")
        self._uploaded: set[str] = set()
        self.status_cache = StatusCaches(self._new_cache)

    def _new_cache(self, region: str, max_age: float) -> StatusCache:
        # The client is looked up per refresh: the backend's shared one for the endpoint the
        # environment names now (Backend.aws).
        return StatusCache(
            lambda keys: _list_steps(self.backend.aws("emr", region), keys),
            describe_all=lambda keys: _list_steps(self.backend.aws("emr", region), keys, listing=True),
            max_age=max_age,
            batch=FIRST_SIGHTS_PER_READ,
            period=refresh_period(max_age),
            name="emr-steps",
            backend="EMR",
            final=lambda step: step["Status"].get("State") in _TERMINAL_STEP_STATES,
        )

    def _entrypoint_uri(self, cfg: EMRConfig) -> str:
        content = _ENTRYPOINT.read_bytes()
        bucket = cfg.require_entrypoint_bucket()
        # Content-addressed key: steps in flight keep their script when the connector is upgraded.
        key = f"flyte/emr/entrypoint-{hashlib.sha256(content).hexdigest()[:12]}.py"
        uri = f"s3://{bucket}/{key}"
        if uri not in self._uploaded:
            s3 = self.backend.aws("s3", cfg.region)
            try:
                s3.head_object(Bucket=bucket, Key=key)
            except ClientError:
                s3.put_object(Bucket=bucket, Key=key, Body=content, ContentType="text/x-python")
            self._uploaded.add(uri)
        return uri

    def create_sync(
        self,
        task_template: TaskTemplate,
        output_prefix: str,
        inputs: LiteralMap | None = None,
        task_execution_metadata: Any = None,
    ) -> EMRStepMetadata:
        cfg = EMRConfig.from_env()
        spark = config_from_custom(EMRSpark, task_template.custom, task_template.id.name)
        image, command, env = rendered_container(task_template, output_prefix)
        cluster_id, name = _attempt_of(task_template, output_prefix, task_execution_metadata)
        transient = cluster_id is None
        step = {
            "Name": name,
            "ActionOnFailure": "TERMINATE_CLUSTER" if transient else "CONTINUE",
            "HadoopJarStep": {
                "Jar": "command-runner.jar",
                "Args": [*_spark_submit_args(image, env, spark.spark_conf), self._entrypoint_uri(cfg), *command],
            },
        }
        emr = self.backend.aws("emr", cfg.region)
        has_outputs = bool(task_template.interface.outputs)
        ledger = self._ledger(cfg.region)
        creates = self.backend.aws("emr", cfg.region, for_creates=True)

        # Neither AddJobFlowSteps nor RunJobFlow takes a client token and both accept any number of
        # steps or clusters of one name: the attempt is claimed across replicas first
        # (cdao_connectors._attempts); a dead claimant's step or cluster is found by its name.
        def once(on: str | None, create: Callable[[], dict[str, Any]], find: Callable[[], Any]) -> dict[str, Any]:
            return ledger.once(
                _attempt_key(on, name),
                create,
                find,
                CREATE_WAIT_SECONDS,
                started_at=CREATE_STARTED_AT.get(),
                sweep=self._sweep_target(cfg.region, on, name),
            )

        if transient:

            def find_cluster() -> dict[str, Any] | None:
                found = self._find_cluster(emr, name)
                return {"cluster_id": found} if found else None

            def run() -> dict[str, Any]:
                return {
                    "cluster_id": create_once(
                        lambda: self._run_transient(creates, cfg, spark, name, step), CREATE_WAIT_SECONDS
                    )
                }

            cluster_id = once(None, run, find_cluster)["cluster_id"]
            unlisted = EMRStepMetadata(cluster_id, "", transient, cfg.region, output_prefix, has_outputs)
            try:
                step_id = self._find_step(emr, cluster_id, name)
            except Exception as exc:
                # Unlisted for now (throttled): the error fails the attempt, so its cluster must not
                # run on with nobody to stop it (below).
                self._stop_unlisted(emr, ledger, name, unlisted, exc)
            if step_id is None:
                # RunJobFlow answers only the cluster's id (botocore emr/2009-03-31 RunJobFlowOutput),
                # so its step is found by listing. Without it no GetTask can follow the task, and the
                # error fails the attempt (launcher.go), whose cluster nobody would stop: terminate
                # it, and mark the attempt abandoned so that no re-send adopts the terminated cluster.
                self._stop_unlisted(
                    emr,
                    ledger,
                    name,
                    unlisted,
                    RuntimeError(
                        f"EMR cluster {cluster_id} lists no step {name}; the cluster was terminated and the "
                        "task's next attempt, if one is left, starts a new one"
                    ),
                )
        else:
            on = cluster_id

            def find_step() -> dict[str, Any] | None:
                found = self._find_step(emr, on, name)
                return {"step_id": found} if found else None

            def add() -> dict[str, Any]:
                try:
                    added = create_once(
                        lambda: creates.add_job_flow_steps(JobFlowId=on, Steps=[step]), CREATE_WAIT_SECONDS
                    )
                except ClientError as exc:
                    if _is_step_cap(exc):
                        raise StepCapReached(
                            f"EMR cluster {on} already has {MAX_ACTIVE_STEPS} PENDING and RUNNING steps, the most "
                            "a cluster takes; this attempt fails and the task's next attempt, if one is left, adds "
                            "its step again (spread the tasks over more clusters, or use EMR Serverless)"
                        ) from exc
                    raise
                return {"step_id": added["StepIds"][0]}

            step_id = once(on, add, find_step)["step_id"]
        return EMRStepMetadata(cluster_id, step_id, transient, cfg.region, output_prefix, has_outputs)

    def _stop_unlisted(
        self, emr: Any, ledger: AttemptLedger, name: str, unlisted: EMRStepMetadata, error: Exception
    ) -> NoReturn:
        """Raises ``error`` once the transient cluster whose step could not be listed is terminated,
        or :class:`LeftRunning` for it when TerminateJobFlows fails (the create's caller stops it in
        the background, and the sweeper should this replica end first). No GetTask could follow that
        cluster: its attempt is marked abandoned even if a re-send adopted it."""
        item = _attempt_key(None, name)
        target = self._sweep_target(unlisted.region, None, name, resource_meta=unlisted)
        try:
            ledger.abandon(item, unless_adopted=False, sweep=target)
        except Exception as exc:  # a running cluster nobody follows costs more than the rare re-send
            _log.warning("attempt of EMR cluster %s: could not mark it abandoned: %s", unlisted.cluster_id, exc)
        try:
            emr.terminate_job_flows(JobFlowIds=[unlisted.cluster_id])
        except Exception as refused:
            raise LeftRunning(unlisted, error) from refused
        try:
            ledger.settle(item, "cancelled: its step could not be listed")
        except Exception as exc:  # the sweeper's terminate of a terminated cluster is a no-op
            _log.warning("attempt of EMR cluster %s stays in the sweep index: %s", unlisted.cluster_id, exc)
        raise error

    def _sweep_target(
        self, region: str, cluster_id: str | None, name: str, resource_meta: EMRStepMetadata | None = None
    ) -> SweepTarget:
        """How the sweeper finds (:meth:`swept_job`) the attempt's step, or transient cluster when
        ``cluster_id`` is None, named ``name``; or stops ``resource_meta`` when it is known."""
        return SweepTarget(
            backend=self.backend.name,
            task_type=self.task_category.name,
            task_version=self.task_category.version,
            lookup={"region": region, "cluster_id": cluster_id, "name": name},
            resource_meta=None if resource_meta is None else resource_meta.encode(),
        )

    def attempt_answers(
        self, task_template: TaskTemplate, output_prefix: str, task_execution_metadata: Any
    ) -> AttemptAnswers:
        # The claim's item (create_sync): its answer takes it out of the sweep index, a give-up
        # marks it abandoned before cancelling the step or terminating the cluster.
        cluster_id, name = _attempt_of(task_template, output_prefix, task_execution_metadata)
        return AttemptAnswers(self.backend, _attempt_key(cluster_id, name), self.task_category, claimed=True)

    def swept_job(self, lookup: dict[str, Any], recorded: dict[str, Any] | None) -> EMRStepMetadata | None:
        """The step, or transient cluster, of a claim nobody answered (cdao_connectors._sweeper):
        the one it recorded, else the one its name lists; enough of it for :meth:`delete_sync`."""
        region, cluster_id, name = lookup["region"], lookup["cluster_id"], lookup["name"]
        emr = self.backend.aws("emr", region)
        if cluster_id is None:
            found = (recorded or {}).get("cluster_id") or self._find_cluster(emr, name)
            return None if found is None else EMRStepMetadata(found, "", True, region, "", False)
        step_id = (recorded or {}).get("step_id") or self._find_step(emr, cluster_id, name)
        return None if step_id is None else EMRStepMetadata(cluster_id, step_id, False, region, "", False)

    def _ledger(self, region: str) -> AttemptLedger:
        return AttemptLedger(self.backend.aws("dynamodb", region), attempt_table())

    @staticmethod
    def _find_step(emr: Any, cluster_id: str, name: str) -> str | None:
        for page in emr.get_paginator("list_steps").paginate(ClusterId=cluster_id):
            for s in page["Steps"]:
                if s["Name"] == name and s["Status"]["State"] != "CANCELLED":
                    return s["Id"]
        return None

    @staticmethod
    def _find_cluster(emr: Any, name: str) -> str | None:
        for page in emr.get_paginator("list_clusters").paginate(ClusterStates=_LIVE_CLUSTER_STATES):
            for c in page["Clusters"]:
                if c["Name"] == name:
                    return c["Id"]
        return None

    @staticmethod
    def _run_transient(emr: Any, cfg: EMRConfig, spark: EMRSpark, name: str, step: dict[str, Any]) -> str:
        service_role, instance_profile = cfg.transient_roles()
        instances: dict[str, Any] = {
            "InstanceGroups": [
                {"InstanceRole": "MASTER", "InstanceType": spark.instance_type, "InstanceCount": 1},
                {"InstanceRole": "CORE", "InstanceType": spark.instance_type, "InstanceCount": spark.instance_count},
            ],
            # The cluster exists for this one step and goes away by itself when it ends.
            "KeepJobFlowAliveWhenNoSteps": False,
            "TerminationProtected": False,
        }
        if cfg.subnet_id:
            instances["Ec2SubnetId"] = cfg.subnet_id
        request: dict[str, Any] = {
            "Name": name,
            "ReleaseLabel": cfg.release_label,
            "Applications": [{"Name": "Spark"}],
            "Instances": instances,
            "Steps": [step],
            "ServiceRole": service_role,
            "JobFlowRole": instance_profile,
            "VisibleToAllUsers": True,
            # The policy allows RunJobFlow only with the stack tag in the request, and every later
            # call only on clusters carrying it (cdao_connector_resources).
            "Tags": [{"Key": k, "Value": v} for k, v in resource_tags(cfg.stack).items()],
        }
        if cfg.log_uri:
            request["LogUri"] = cfg.log_uri
        return emr.run_job_flow(**request)["JobFlowId"]

    def status_of(self, resource_meta: EMRStepMetadata) -> tuple[StatusCache, tuple[str, str]]:
        cache = self.status_cache(resource_meta.region, status_refresh_seconds())
        return cache, (resource_meta.cluster_id, resource_meta.step_id)

    @staticmethod
    def resource_for(step: dict[str, Any] | None, resource_meta: EMRStepMetadata) -> Resource:
        if step is None:
            return Resource(
                phase=TaskExecution.FAILED,
                message=f"EMR has no step {resource_meta.step_id} on cluster {resource_meta.cluster_id}",
            )
        status = step["Status"]
        state = status.get("State")
        region = resource_meta.region
        links = [
            log_link(
                "EMR console",
                f"https://{region}.console.aws.amazon.com/emr/home?region={region}"
                f"#/clusterDetails/{resource_meta.cluster_id}",
            )
        ]
        details = status.get("FailureDetails") or {}
        reason = (
            details.get("Message") or details.get("Reason") or (status.get("StateChangeReason") or {}).get("Message")
        )
        if state not in _STEP_PHASES:
            return Resource(
                phase=TaskExecution.RUNNING, message=f"unknown EMR step state {state!r}; waiting", log_links=links
            )
        if state not in _TERMINAL_STEP_STATES or state == "INTERRUPTED":
            # An interrupted step lost its instances: retried whatever the task wrote, so nothing is read.
            return Resource(phase=_STEP_PHASES[state], message=reason or state, log_links=links)
        outcome = outcome_after_exit(
            resource_meta.output_prefix,
            resource_meta.has_outputs,
            platform_succeeded=state == "COMPLETED",
            platform_message=reason or f"EMR step {state.lower()}",
        )
        return Resource(phase=outcome.phase, message=outcome.message, log_links=links)

    def delete_sync(self, resource_meta: EMRStepMetadata) -> None:
        emr = self.backend.aws("emr", resource_meta.region)
        if resource_meta.transient:
            emr.terminate_job_flows(JobFlowIds=[resource_meta.cluster_id])
            return
        answer = emr.cancel_steps(
            ClusterId=resource_meta.cluster_id,
            StepIds=[resource_meta.step_id],
            StepCancellationOption="TERMINATE_PROCESS",
        )
        # CancelSteps succeeds as a call and answers per step: SUBMITTED, or FAILED with the reason
        # (botocore emr/2009-03-31 CancelStepsInfo); only PENDING and RUNNING steps can be cancelled
        # (https://docs.aws.amazon.com/emr/latest/APIReference/API_CancelSteps.html). A refusal for a
        # step that has ended meanwhile (an abort racing the step's completion) leaves nothing to
        # cancel; a refusal for a step still PENDING or RUNNING must reach propeller as an error so
        # it retries the abort, never as a cancelled step that keeps running (and, since propeller
        # stops retrying, the step is kept for the sweep first: _backends.aborting).
        for info in answer.get("CancelStepsInfoList") or []:
            if info.get("Status") == "SUBMITTED":
                continue
            step_id = info.get("StepId") or resource_meta.step_id
            step = emr.describe_step(ClusterId=resource_meta.cluster_id, StepId=step_id)["Step"]
            state = step["Status"]["State"]
            if state in _CANCELLABLE_STEP_STATES:
                raise RuntimeError(
                    f"EMR refused to cancel step {step_id} on cluster {resource_meta.cluster_id}, which is "
                    f"{state}: {info.get('Reason') or info.get('Status')}"
                )


ConnectorRegistry.register(EMRConnector())
