"""The seeds' SDK examples, read from the seeds themselves, run as written.

Sources: ``../shared/seeds/000_*`` ("CDAO SDK Example Usage", the decision matrix and the platform
diagram of "Multi-Compute Execution") and ``003_*`` ("Enhanced CDAO SDK with SageMaker Support",
"CDAO SDK Usage Examples in Jupyter"). Set ``CDAO_SEEDS_DIR`` when the seeds live elsewhere; without
them the module fails in CI and is skipped elsewhere, saying where it looked (support/seeds.py).

Each example runs cell by cell in one namespace, as a notebook would. What is substituted, and why:

* the control plane: no Flyte admin runs on a laptop, so the ``FlyteRemote`` that ``configure``
  builds is replaced by a double with flytekit 1.16.31's signatures (``execute`` returns an
  execution whose ``.id`` is a ``WorkflowExecutionIdentifier``; ``fetch_execution(project, domain,
  name)``; ``sync_execution``), and the workflows the examples launch are also run in-process;
* no data path: the examples' tasks return strings and read nothing, so ``s3://...`` stays as written;
* seed 003's role ``arn:aws:iam::ACCOUNT:role/...``: ``ACCOUNT`` is a placeholder, not an account,
  and is refused as written (see ``_SEED_ROLE``); the examples run with AWS's documentation account.

Every block runs as written, statement by statement, and any error fails the test. Keywords that
only say where a task runs remotely and that nothing can honour there (``batch_task(instance_type=)``,
``@sagemaker_batch_transform_task`` on a function) run locally and are refused when the task is
registered, with the reason and what to write; the tests check those refusals by serialising the
seeds' own tasks. Seed 003's first block uses ``@workflow`` without importing it, and its Jupyter
block launches that block's pipeline: the seeds write them as later cells of one notebook, so they
run after seed 000's example in its namespace (whose Cell 1 imports ``workflow``).
"""

from __future__ import annotations

import ast
import itertools
import os
import re
import sys
import types
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import cdao_sdk
import pytest
from cdao_connectors.aws_batch.task import BATCH_TASK_TYPE
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_connectors.emr.task import EMR_SERVERLESS_TASK_TYPE
from cdao_connectors.sagemaker.task import SAGEMAKER_PROCESSING_TASK_TYPE, SAGEMAKER_TRAINING_TASK_TYPE
from cdao_sdk import settings
from flyteidl.core.execution_pb2 import WorkflowExecution
from flytekit.models.core.identifier import WorkflowExecutionIdentifier
from propeller import serialize
from seeds import seeds_dir

SEEDS = seeds_dir(os.environ)


def _seed(prefix: str) -> str:
    (path,) = SEEDS.glob(f"{prefix}_*")
    return path.read_text(encoding="utf-8")


def _python_block(text: str, heading: str) -> str:
    """The first ```python block after ``heading``."""
    start = text.index(heading)
    match = re.compile(r"```python\n(.*?)```", re.S).search(text, start)
    assert match is not None, f"no python block after {heading!r}"
    return match.group(1)


# The SDK blocks the tests below run; every python block of the seeds that uses the SDK must be one.
RUN_BLOCKS = {
    "000": ["### CDAO SDK Example Usage"],
    "003": ["### Enhanced CDAO SDK with SageMaker Support", "### CDAO SDK Usage Examples in Jupyter"],
}


def test_every_sdk_block_of_the_seeds_is_run():
    """A seed block that uses the SDK and that no test runs would have no status at all."""
    for prefix, headings in RUN_BLOCKS.items():
        text = _seed(prefix)
        run = {_python_block(text, heading) for heading in headings}
        for match in re.finditer(r"```python\n(.*?)```", text, re.S):
            if "cdao_sdk" in match.group(1):
                heading = text[: match.start()].rstrip().splitlines()[-1]
                assert match.group(1) in run, f"seed {prefix}: the SDK block after {heading!r} is not run by a test"


def _section(text: str, heading: str) -> str:
    start = text.index(heading)
    end = text.find("\n## ", start + len(heading))
    return text[start : end if end != -1 else None]


# What registering the seeds' tasks that cannot run remotely answers, as a regex.
REFUSED_AT_REGISTRATION = {
    "preprocess_data": r"instance_type='c5\.4xlarge': AWS Batch runs a job on its compute environment's instance "
    r"types.*ask for the job's size with vcpus= and memory= instead",
    "batch_inference": r"SageMaker batch transform runs a model package's inference code.*cannot be registered\. "
    r"Write score = sagemaker_batch_transform_task",
}


class _Remote:
    """FlyteRemote as flytekit 1.16.31 defines the calls the SDK makes (flytekit/remote/remote.py)."""

    def __init__(self) -> None:
        self.executed: list[tuple[Any, dict[str, Any], str, str]] = []
        self.fetched: list[tuple[str, str, str]] = []

    def execute(self, entity, inputs, project, domain, wait, **kwargs):
        self.executed.append((entity, inputs, project, domain))
        return SimpleNamespace(id=WorkflowExecutionIdentifier(project, domain, f"exec{len(self.executed)}"))

    def fetch_execution(self, project, domain, name):
        self.fetched.append((project, domain, name))
        return SimpleNamespace(name=name, project=project, domain=domain)

    def sync_execution(self, execution, sync_nodes):
        return SimpleNamespace(
            id=WorkflowExecutionIdentifier(execution.project, execution.domain, execution.name),
            closure=SimpleNamespace(phase=WorkflowExecution.SUCCEEDED),
            is_done=True,
            node_executions={},
        )


@pytest.fixture
def remote(monkeypatch) -> Iterator[_Remote]:
    double = _Remote()
    monkeypatch.setattr(cdao_sdk.client, "_flyte_remote", lambda *args: double)
    for name in ("CDAO_AWS_REGION", "AWS_REGION", "CDAO_SAGEMAKER_ROLE_ARN", "CDAO_DEFAULT_BUCKET"):
        monkeypatch.delenv(name, raising=False)
    settings.reset()
    yield double
    settings.reset()
    cdao_sdk.client._remote = None


_modules = itertools.count()


@pytest.fixture
def seed_module(tmp_path, monkeypatch):
    """A fresh importable module for each example: flytekit finds a task's module through
    sys.modules and reads its source from the module's file (flytekit/core/tracker.py, utils.py)."""

    def make(code: str) -> dict[str, Any]:
        name = f"seed_example_{next(_modules)}"
        path = tmp_path / f"{name}.py"
        path.write_text(code, encoding="utf-8")
        module = types.ModuleType(name)
        module.__file__ = str(path)
        monkeypatch.setitem(sys.modules, name, module)
        return module.__dict__

    return make


def _run_cells(namespace: dict[str, Any]) -> None:
    """Run the module's code statement by statement, as notebook cells; any error fails the test."""
    filename = namespace["__file__"]
    for stmt in ast.parse(Path(filename).read_text(encoding="utf-8")).body:
        exec(compile(ast.Module([stmt], []), filename, "exec"), namespace)  # noqa: S102  (the seed's own code)


def test_cdao_sdk_example_usage(remote, seed_module):
    ns = seed_module(_python_block(_seed("000"), RUN_BLOCKS["000"][0]))
    _run_cells(ns)

    assert serialize(ns["train_model"]).type == CODEWEAVE_TASK_TYPE
    assert serialize(ns["train_model"]).custom["gpu_type"] == "nvidia-tesla-v100"
    assert ns["preprocess_data"].task_config.spot is True
    with pytest.raises(ValueError, match=REFUSED_AT_REGISTRATION["preprocess_data"]):
        serialize(ns["preprocess_data"])
    # Launched on the configured project/domain, and monitored by execution.id.
    ((entity, inputs, project, domain),) = remote.executed
    assert (entity, inputs, project, domain) == (
        ns["ml_pipeline"],
        {"data_path": "s3://bucket/raw-data.csv"},
        "ml-experiments",
        "development",
    )
    assert remote.fetched == [("ml-experiments", "development", "exec1")]
    # ... and the same workflow runs here, in-process.
    assert ns["ml_pipeline"](data_path="s3://bucket/raw-data.csv") == "s3://bucket/trained-model.pkl"


# Platform Selection column of the decision matrix -> what the task serializes to.
_PLATFORM_TYPES = {
    "Codeweave GPU": {CODEWEAVE_TASK_TYPE},
    "AWS Batch (Spot)": {BATCH_TASK_TYPE},
    "AWS Batch": {BATCH_TASK_TYPE},
    "EKS Pods": {"python-task"},
    "EMR Spark": {EMR_SERVERLESS_TASK_TYPE},
}


def _matrix_rows() -> list[tuple[str, str]]:
    section = _section(_seed("000"), "### Enhanced Task Execution Decision Matrix")
    rows = []
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) == 7 and cells[1].startswith("`@"):
            rows.append((cells[1].strip("`"), cells[5].strip("*")))
    assert len(rows) >= 8, rows
    return rows


@pytest.mark.parametrize(("decorator", "platform"), _matrix_rows())
def test_decision_matrix(remote, seed_module, decorator, platform):
    ns = seed_module(f"from cdao_sdk import *\n{decorator}\ndef step(x: int) -> int:\n    return x + 1\n")
    if "ml=True" in decorator:
        # A table cell, not a block: MLlib ships with Spark on every EMR release, so ml=True could never
        # change what runs and is refused when decorating (https://docs.aws.amazon.com/emr/latest/
        # ReleaseGuide/Spark-release-history.html lists no separate ML component).
        with pytest.raises(ValueError, match=r"spark_task ml=True: Spark MLlib ships with every EMR release"):
            _run_cells(ns)
        return
    _run_cells(ns)
    assert ns["step"](x=1) == 2
    # Registering reads the stack's values (CI exports them); the matrix is about where the task runs.
    settings.update(
        region="us-east-1",
        emr_serverless_role="arn:aws:iam::123456789012:role/emr-serverless-job",
        emr_serverless_application_id="00fabc123",
    )
    assert serialize(ns["step"]).type in _PLATFORM_TYPES[platform]


def test_platform_diagram_decorators(remote, seed_module):
    section = _section(_seed("000"), "Multi-Compute Execution\n")
    found = set(re.findall(r"@(?:gpu_task|batch_task|spark_task|cpu_task|task)\([^)]*\)", section))
    assert {"@batch_task(spot=True)", "@batch_task(on_demand=True)"} <= found
    for decorator in sorted(found):
        ns = seed_module(f"from cdao_sdk import *\n{decorator}\ndef step(x: int) -> int:\n    return x\n")
        if "ml=True" in decorator:  # as in the decision matrix
            with pytest.raises(ValueError, match=r"spark_task ml=True: Spark MLlib ships with every EMR release"):
                _run_cells(ns)
            continue
        _run_cells(ns)
        assert ns["step"](x=3) == 3
        if decorator.startswith("@batch_task"):
            assert serialize(ns["step"]).custom["spot"] is ("on_demand" not in decorator)


# Seed 003 writes its role as ``arn:aws:iam::ACCOUNT:role/...``, a placeholder for the reader's
# account: not a role ARN (IAM's format has a 12-digit account, as SageMaker's own RoleArn pattern
# does: botocore sagemaker/2017-07-24 ``RoleArn``), so configure_sagemaker refuses it as written
# (test_the_seeds_placeholder_role_is_refused_naming_the_setting). The examples run with AWS's
# documentation account (111122223333) in its place, the one substitution besides the control plane.
_SEED_ROLE = "arn:aws:iam::ACCOUNT:role/SageMakerExecutionRole"
_EXAMPLE_ROLE = _SEED_ROLE.replace("ACCOUNT", "111122223333")


def test_the_seeds_placeholder_role_is_refused_naming_the_setting(remote):
    assert _SEED_ROLE in _python_block(_seed("003"), RUN_BLOCKS["003"][0])
    with pytest.raises(ValueError, match=r"configure_sagemaker sagemaker_role='arn:aws:iam::ACCOUNT:.*IAM role ARN"):
        cdao_sdk.configure_sagemaker(sagemaker_role=_SEED_ROLE)


def test_sagemaker_examples(remote, seed_module):
    text = _seed("003").replace(_SEED_ROLE, _EXAMPLE_ROLE)
    # Later cells of seed 000's notebook: one namespace (see the module docstring).
    notebook = seed_module(_python_block(_seed("000"), RUN_BLOCKS["000"][0]))
    _run_cells(notebook)
    settings.reset()
    ns = seed_module(_python_block(text, RUN_BLOCKS["003"][0]))
    ns.update({k: v for k, v in notebook.items() if not k.startswith("__")})
    _run_cells(ns)
    assert settings.get("sagemaker_role") == _EXAMPLE_ROLE
    # The pipeline runs here, in-process, as written: every task body, the transform's included.
    assert ns["end_to_end_sagemaker_pipeline"](data_path="s3://bucket/raw.csv") == "s3://bucket/batch-predictions.csv"

    settings.update(region="us-east-1")  # the seed's configure names no region; registration needs one
    train = serialize(ns["train_xgboost_model"])
    assert (train.type, train.custom["use_spot_instances"], train.custom["instance_count"]) == (
        SAGEMAKER_TRAINING_TASK_TYPE,
        True,
        1,
    )
    # The declared framework is recorded on the job; the job runs the task image.
    assert train.custom["tags"] == {"cdao.io/framework": "xgboost", "cdao.io/framework-version": "1.2-1"}
    processing = serialize(ns["preprocess_features"])
    assert (processing.type, processing.custom["instance_type"]) == (SAGEMAKER_PROCESSING_TASK_TYPE, "ml.m5.2xlarge")
    assert processing.custom["tags"] == {"cdao.io/framework": "sklearn", "cdao.io/framework-version": "0.23-1"}
    with pytest.raises(ValueError, match=REFUSED_AT_REGISTRATION["batch_inference"]):
        serialize(ns["batch_inference"])

    # The next cells of the same notebook: one namespace.
    jupyter = seed_module(_python_block(text, RUN_BLOCKS["003"][1]))
    jupyter.update({k: v for k, v in ns.items() if not k.startswith("__")})
    launched = len(remote.executed)
    _run_cells(jupyter)
    assert jupyter["sagemaker_workflow"] is cdao_sdk.workflow
    assert settings.get("default_bucket") == "bsingh-ml-workflows"
    pytorch = serialize(jupyter["train_pytorch_model"]).custom
    assert (pytorch["instance_type"], pytorch["checkpoint_s3_uri"], pytorch["tags"]) == (
        "ml.p3.2xlarge",
        "s3://bsingh-ml-workflows/sagemaker/checkpoints",
        {"cdao.io/framework": "pytorch"},
    )
    # Cell 3 launched the pipeline, Cell 4 monitored that execution by its id.
    (entity, inputs, _, _) = remote.executed[launched]
    assert (entity, inputs) == (
        ns["end_to_end_sagemaker_pipeline"],
        {"data_path": "s3://bsingh-ml-workflows/raw/dataset.csv"},
    )
    assert remote.fetched[-1][2] == jupyter["execution"].id.name


def test_user_flow_diagram_names(remote, seed_module):
    section = _section(_seed("000"), "### SDK Architecture & User Flow")
    named = set(re.findall(r"@cdao_sdk\.(\w+)", section))
    assert named == {"task", "workflow"}
    ns = seed_module(
        "import cdao_sdk\n\n\n@cdao_sdk.task\ndef step(x: int) -> int:\n    return x * 2\n\n\n"
        "@cdao_sdk.workflow\ndef flow(x: int) -> int:\n    return step(x=x)\n"
    )
    _run_cells(ns)
    assert ns["flow"](x=4) == 8
