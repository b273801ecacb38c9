"""The seeds' SDK examples, read from the seeds themselves, run as written.

Sources: ``../shared/seeds/000_*`` ("CDAO SDK Example Usage", the decision matrix and the platform
diagram of "Multi-Compute Execution") and ``003_*`` ("Enhanced CDAO SDK with SageMaker Support",
"CDAO SDK Usage Examples in Jupyter"). Set ``CDAO_SEEDS_DIR`` when the seeds live elsewhere; without
them the module is skipped, saying where it looked.

Each example runs cell by cell in one namespace, as a notebook would. What is substituted, and why:

* the control plane: no Flyte admin runs on a laptop, so the ``FlyteRemote`` that ``configure``
  builds is replaced by a double with flytekit 1.16.31's signatures (``execute`` returns an
  execution whose ``.id`` is a ``WorkflowExecutionIdentifier``; ``fetch_execution(project, domain,
  name)``; ``sync_execution``), and the workflows the examples launch are also run in-process;
* no data path: the examples' tasks return strings and read nothing, so ``s3://...`` stays as written.

The SDK refuses, with the reason, a few keywords the seeds use that no platform here can honour (an
accepted keyword must change what runs). :data:`REFUSED` lists each with the reason; the test
checks the statement fails with exactly that reason, then runs it without the keyword and goes on.
An entry that stops being needed, or a new refusal, fails the test.
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

SEEDS = Path(os.environ.get("CDAO_SEEDS_DIR") or Path(__file__).resolve().parents[3] / "shared" / "seeds")
if not SEEDS.is_dir():
    pytest.skip(f"the seeds are not at {SEEDS} (set CDAO_SEEDS_DIR)", allow_module_level=True)


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


# (decorator, keyword) -> the reason the SDK gives, as a regex.
# Each reason says why nothing can honour the keyword and what to write instead:
# * instance_type: a Batch job states its size; instance types are its compute environments'
#   (AWS Batch API ComputeResource.instanceTypes; the job definition has no instance type), and
#   infra/components/compute.py gives each queue one environment of the stack's types;
# * ml: MLlib is part of Spark itself, in every EMR release (no separate component,
#   https://docs.aws.amazon.com/emr/latest/ReleaseGuide/Spark-release-history.html);
# * framework, framework_version: a SageMaker job of the SDK runs pyflyte-execute in the task
#   image (flytekitplugins-awssagemaker pythonic_base.py ``_container_entrypoint``); SageMaker's
#   framework images have no flytekit, so only the task image can run the function.
REFUSED: dict[tuple[str, str], str] = {
    ("batch_task", "instance_type"): r"AWS Batch runs a job on its compute environment's instance types.*"
    r"vcpus= and memory= instead",
    ("spark_task", "ml"): r"Spark MLlib ships with every EMR release.*import pyspark\.ml in the task instead",
    ("sagemaker_training_task", "framework"): r"cannot run a Flyte function.*put the library in the image",
    ("sagemaker_training_task", "framework_version"): r"the library's version is the task image's; pin it there",
    ("sagemaker_processing_task", "framework"): r"cannot run a Flyte function.*put the library in the image",
    ("sagemaker_processing_task", "framework_version"): r"the library's version is the task image's; pin it there",
}
# Not a keyword but a form: a batch transform serves a model package, so it is not a decorator.
NOT_A_DECORATOR = {"sagemaker_batch_transform_task": r"is not a decorator: a batch transform runs a model package"}


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


def _decorator_name(call: ast.expr) -> str:
    func = call.func if isinstance(call, ast.Call) else call
    return func.attr if isinstance(func, ast.Attribute) else func.id  # type: ignore[union-attr]


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


def _run_cells(namespace: dict[str, Any], missing: frozenset[str] = frozenset()) -> set[tuple[str, str]]:
    """Run the module's code statement by statement; returns the refusals met (each checked against its reason).

    A statement failing on a name in ``missing`` (one the seed never defines, or one a refusal left
    undefined) is recorded as ``("NameError", name)`` and skipped.
    """
    met: set[tuple[str, str]] = set()
    filename = namespace["__file__"]
    for stmt in ast.parse(Path(filename).read_text(encoding="utf-8")).body:
        while True:
            try:
                exec(compile(ast.Module([stmt], []), filename, "exec"), namespace)  # noqa: S102  (the seed's own code)
                break
            except NameError as error:
                if error.name not in missing:
                    raise
                met.add(("NameError", error.name))
                break
            except (ValueError, TypeError) as error:
                calls = [d for d in getattr(stmt, "decorator_list", []) if isinstance(d, ast.Call)]
                hit = next(
                    (
                        (call, kw)
                        for call in calls
                        for kw in call.keywords
                        if (_decorator_name(call), kw.arg) in REFUSED
                    ),
                    None,
                )
                if hit is None:
                    name = (
                        next(
                            (_decorator_name(d) for d in stmt.decorator_list if _decorator_name(d) in NOT_A_DECORATOR),
                            None,
                        )
                        if hasattr(stmt, "decorator_list")
                        else None
                    )
                    if name is None:
                        raise
                    assert re.search(NOT_A_DECORATOR[name], str(error)), error
                    met.add((name, "@"))
                    break
                call, kw = hit
                key = (_decorator_name(call), kw.arg or "")
                assert re.search(REFUSED[key], str(error)), (key, error)
                met.add(key)
                call.keywords.remove(kw)
    return met


def test_cdao_sdk_example_usage(remote, seed_module):
    ns = seed_module(_python_block(_seed("000"), RUN_BLOCKS["000"][0]))
    met = _run_cells(ns)
    assert met == {("batch_task", "instance_type")}

    assert serialize(ns["train_model"]).type == CODEWEAVE_TASK_TYPE
    assert serialize(ns["train_model"]).custom["gpu_type"] == "nvidia-tesla-v100"
    prep = serialize(ns["preprocess_data"])
    assert (prep.type, prep.custom["spot"]) == (BATCH_TASK_TYPE, True)
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
    met = _run_cells(ns)
    if met:
        assert met == {("spark_task", "ml")}
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
        _run_cells(ns)
        assert ns["step"](x=3) == 3
        if decorator.startswith("@batch_task"):
            assert serialize(ns["step"]).custom["spot"] is ("on_demand" not in decorator)


def test_sagemaker_examples(remote, seed_module):
    text = _seed("003")
    # The block's pipeline cannot be built: it uses `workflow`, which the block never imports, and
    # calls batch_inference, which the refused transform decorator leaves undefined; the Jupyter
    # block then launches that pipeline.
    missing = frozenset({"workflow", "batch_inference", "end_to_end_sagemaker_pipeline", "execution"})
    ns = seed_module(_python_block(text, RUN_BLOCKS["003"][0]))
    met = _run_cells(ns, missing)
    assert met == {
        ("sagemaker_training_task", "framework"),
        ("sagemaker_training_task", "framework_version"),
        ("sagemaker_processing_task", "framework"),
        ("sagemaker_processing_task", "framework_version"),
        ("sagemaker_batch_transform_task", "@"),
        ("NameError", "workflow"),
    }
    assert settings.get("sagemaker_role") == "arn:aws:iam::ACCOUNT:role/SageMakerExecutionRole"
    settings.update(region="us-east-1")  # the seed's configure names no region; registration needs one
    train = serialize(ns["train_xgboost_model"])
    assert (train.type, train.custom["use_spot_instances"], train.custom["instance_count"]) == (
        SAGEMAKER_TRAINING_TASK_TYPE,
        True,
        1,
    )
    assert serialize(ns["preprocess_features"]).custom["instance_type"] == "ml.m5.2xlarge"
    assert serialize(ns["preprocess_features"]).type == SAGEMAKER_PROCESSING_TASK_TYPE
    assert "batch_inference" not in ns

    # The next cells of the same notebook: one namespace.
    jupyter = seed_module(_python_block(text, RUN_BLOCKS["003"][1]))
    jupyter.update({k: v for k, v in ns.items() if not k.startswith("__")})
    met = _run_cells(jupyter, missing)
    ns = jupyter
    assert met == {
        ("sagemaker_training_task", "framework"),
        ("NameError", "end_to_end_sagemaker_pipeline"),
        ("NameError", "execution"),
    }
    assert ns["sagemaker_workflow"] is cdao_sdk.workflow
    assert settings.get("default_bucket") == "bsingh-ml-workflows"
    pytorch = serialize(ns["train_pytorch_model"]).custom
    assert (pytorch["instance_type"], pytorch["checkpoint_s3_uri"]) == (
        "ml.p3.2xlarge",
        "s3://bsingh-ml-workflows/sagemaker/checkpoints",
    )
    # Cell 4 monitors that execution by its id, as test_sdk_contracts shows with a launched one.


def test_user_flow_diagram_names(remote, seed_module):
    section = _section(_seed("000"), "### SDK Architecture & User Flow")
    named = set(re.findall(r"@cdao_sdk\.(\w+)", section))
    assert named == {"task", "workflow"}
    ns = seed_module(
        "import cdao_sdk\n\n\n@cdao_sdk.task\ndef step(x: int) -> int:\n    return x * 2\n\n\n"
        "@cdao_sdk.workflow\ndef flow(x: int) -> int:\n    return step(x=x)\n"
    )
    assert _run_cells(ns) == set()
    assert ns["flow"](x=4) == 8
