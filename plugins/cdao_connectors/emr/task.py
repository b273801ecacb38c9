"""SDK side of EMR on EC2 (no flytekit plugin exists for steps on a cluster).

EMR Serverless is flytekitplugins-awsemrserverless's; the SDK maps ``@spark_task`` onto it.
"""

from __future__ import annotations

import re
from dataclasses import asdict, dataclass, field
from typing import Any

from flytekit import PythonFunctionTask
from flytekit.configuration import SerializationSettings
from flytekit.extend import TaskPlugins
from flytekit.extend.backend.base_connector import AsyncConnectorExecutorMixin
from flytekitplugins.awsemrserverless import EMRServerless, EMRServerlessTask
from flytekitplugins.awsemrserverless.connector import FLYTE_TAGS

from cdao_connectors._aws_limits import (
    EMR_INSTANCE_COUNT,
    EMR_SERVERLESS_EXECUTION_TIMEOUT_MINUTES,
    EMR_SERVERLESS_TAGS,
)
from cdao_connectors._common import ATTEMPT_TAG_KEY
from cdao_connectors._local import LocalDispatchMixin

EMR_SPARK_TASK_TYPE = "cdao-emr-spark-step"

_CLUSTER_ID = re.compile(r"^j-[A-Z0-9]{8,16}$")
_INSTANCE_TYPE = re.compile(r"^[a-z][a-z0-9-]*\.[0-9]*[a-z0-9]+$")


@dataclass(frozen=True)
class EMRSpark:
    """A Spark step: on ``cluster_id`` when given, else on a transient cluster of this shape."""

    cluster_id: str | None = None
    instance_type: str = "m5.xlarge"
    instance_count: int = 3
    spark_conf: dict[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        if self.cluster_id is not None and not _CLUSTER_ID.match(self.cluster_id):
            raise ValueError(f"cluster_id={self.cluster_id!r} is not an EMR cluster id like 'j-2AXXXXXXGAPLF'")
        if not _INSTANCE_TYPE.match(self.instance_type):
            raise ValueError(f"instance_type={self.instance_type!r} is not an EC2 instance type like 'm5.xlarge'")
        EMR_INSTANCE_COUNT.check("instance_count", self.instance_count)
        bad = [k for k, v in self.spark_conf.items() if not isinstance(k, str) or not isinstance(v, str)]
        if bad:
            raise ValueError(f"spark_conf keys and values must be strings; offending keys: {bad}")

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class EMRSparkTask(LocalDispatchMixin, AsyncConnectorExecutorMixin, PythonFunctionTask[EMRSpark]):
    _connector_module = "cdao_connectors.emr.connector"

    def __init__(self, task_config: EMRSpark, task_function: Any, **kwargs: Any):
        super().__init__(task_config=task_config, task_function=task_function, task_type=EMR_SPARK_TASK_TYPE, **kwargs)

    def get_custom(self, settings: SerializationSettings) -> dict[str, Any]:
        return self.task_config.to_dict()


TaskPlugins.register_pythontask_plugin(EMRSpark, EMRSparkTask)


# EMR Serverless is flytekitplugins-awsemrserverless's task type and connector. These subclasses
# exist only so that ``pyflyte run`` runs the body in-process like every other CDAO task (the
# plugin's task always goes through its connector locally).

EMR_SERVERLESS_TASK_TYPE: str = EMRServerlessTask._TASK_TYPE

# The interpreter of the stack's EMR Serverless image (plugins/Dockerfile target `emr-serverless`, its
# /opt/venv: flytekit, the SDK and the tasks' libraries). The plugin's Pythonic mode runs the task's
# `pyflyte-execute` on the driver and its Python workers on the executors under /usr/bin/python3 unless
# the task's sparkSubmitParameters name another (flytekitplugins-awsemrserverless 1.16.31 connector.py
# `_PYTHONIC_SPARK_DEFAULTS` and `_merge_spark_submit_params`: a key the task already sets is kept).
EMR_SERVERLESS_PYTHON = "/opt/venv/bin/python"
PYSPARK_PYTHON_KEYS = (
    "spark.emr-serverless.driverEnv.PYSPARK_DRIVER_PYTHON",
    "spark.emr-serverless.driverEnv.PYSPARK_PYTHON",
    "spark.executorEnv.PYSPARK_PYTHON",
)


def check_execution_timeout(minutes: int) -> None:
    """ValueError naming the field when StartJobRun would refuse ``minutes`` as the run's timeout
    (the plugin's EMRServerless.__post_init__ checks only the minimum)."""
    EMR_SERVERLESS_EXECUTION_TIMEOUT_MINUTES.check("execution_timeout_minutes", minutes)


# The keys of the tags every run gets besides the task's: the plugin's (flytekitplugins-awsemrserverless
# connector.py ``FLYTE_TAGS``, ``_merge_tags``: a task's own tag of such a key replaces it) and the
# connector's attempt tag (cdao_connectors.emr.serverless ``with_attempt_tag``).
ADDED_TAG_KEYS = frozenset(FLYTE_TAGS) | {ATTEMPT_TAG_KEY}


def check_tags(tags: Any) -> None:
    """ValueError naming ``tags`` and the key when StartJobRun would refuse the run's tags: a key or
    value AWS refuses, or so many that the plugin's and the attempt's (:data:`ADDED_TAG_KEYS`) take
    the run past the tags it may hold (:data:`cdao_connectors._aws_limits.EMR_SERVERLESS_TAGS`). The
    attempt's must fit: without it the sweep cannot tell the run from another attempt's and would
    leave it running for an operator. ``tags`` that are not a map of strings are left to the
    config's type check (``cdao_connectors._custom``)."""
    if isinstance(tags, dict) and all(isinstance(x, str) for item in tags.items() for x in item):
        EMR_SERVERLESS_TAGS.check("tags", tags, added=ADDED_TAG_KEYS)


@dataclass
class ServerlessSpark(EMRServerless):
    def __post_init__(self) -> None:
        super().__post_init__()
        check_execution_timeout(self.execution_timeout_minutes)
        check_tags(self.tags)


class ServerlessSparkTask(LocalDispatchMixin, EMRServerlessTask):
    # The plugin's connector, made idempotent on retried creates.
    _connector_module = "cdao_connectors.emr.serverless"


TaskPlugins.register_pythontask_plugin(ServerlessSpark, ServerlessSparkTask)
