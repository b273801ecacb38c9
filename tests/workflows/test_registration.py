"""Every workflow under workflows/ serialises for registration and has its own local test."""

from __future__ import annotations

import importlib
import pkgutil
import re
import tarfile
from collections.abc import Callable, Iterator
from pathlib import Path

import flytekit
import pytest
from cdao_connectors.sagemaker.task import BATCH_TRANSFORM_TASK_TYPE
from flytekit.core.workflow import WorkflowBase
from flytekit.models.task import TaskSpec
from workflow_runs import COLLECTED, EXECUTED
from workflow_test_support import IMAGE_FQN, IMAGE_TAG, ROOT, STACK_ENV, serialize, start_cli

WORKFLOWS = ROOT / "workflows"
TESTS = Path(__file__).parent


def pipeline_modules() -> list[str]:
    return sorted(m.name for m in pkgutil.iter_modules([str(WORKFLOWS)]) if not m.name.startswith("_"))


def workflows_of(module_name: str) -> list[WorkflowBase]:
    # Imported inside the tests, not at collection: one broken module fails its own tests only.
    module = importlib.import_module(f"workflows.{module_name}")
    return [
        obj
        for obj in vars(module).values()
        if isinstance(obj, WorkflowBase) and obj.name.startswith(f"workflows.{module_name}.")
    ]


MODULES = pipeline_modules()


def all_workflows() -> list[WorkflowBase]:
    return [wf for m in MODULES for wf in workflows_of(m)]


@pytest.mark.parametrize("module", MODULES)
def test_every_pipeline_module_defines_a_workflow(module: str) -> None:
    assert workflows_of(module), f"workflows/{module}.py defines no @workflow (helpers belong in _-prefixed modules)"


def test_the_issue_pipelines_are_all_there() -> None:
    names = {wf.name.rsplit(".", 1)[-1] for wf in all_workflows()}
    expected = {
        "ml_pipeline",
        "sagemaker_batch_prediction_pipeline",
        "gpu_training_pipeline",
        "spark_analytics_pipeline",
        "segment_scoring_pipeline",
    }
    assert expected <= names


@flytekit.task
def _double(x: int) -> int:
    if x < 0:
        raise ValueError("negative")
    return 2 * x


@flytekit.workflow
def _probe(x: int) -> int:
    return _double(x=x)


@flytekit.workflow
def _outer(x: int) -> int:
    return _probe(x=x)


def test_only_a_workflow_run_that_returned_counts_as_executed(request: pytest.FixtureRequest) -> None:
    me = request.node.nodeid
    if False:  # named, never run
        _probe(x=1)
    with pytest.raises(Exception, match="negative"):
        _probe(x=-1)
    assert {name for name, test in EXECUTED if test == me} == set()
    assert _outer(x=2) == 4  # _probe runs as its sub-workflow: only the test's own call counts
    assert {name for name, test in EXECUTED if test == me} == {_outer.name}


@pytest.mark.parametrize("module", MODULES)
def test_every_workflow_is_executed_by_its_tests(module: str) -> None:
    """Runs after every other test (workflow_runs.reorder): each workflow of the module must have
    been executed to completion by a test of its own file in this session, not merely named in it."""
    test_file = TESTS / f"test_{module}.py"
    assert test_file.exists(), f"workflows/{module}.py has no local test: add {test_file.relative_to(ROOT)}"
    prefix = f"{test_file.relative_to(ROOT).as_posix()}::"
    if not any(nodeid.startswith(prefix) for nodeid in COLLECTED):
        pytest.skip(f"{test_file.name} is not part of this run; run tests/workflows whole to check it")
    ran = {name for name, test in EXECUTED if test.startswith(prefix)}
    for wf in workflows_of(module):
        assert wf.name in ran, f"no test in {test_file.name} executed {wf.name.rsplit('.', 1)[-1]}(...) to completion"


@pytest.mark.parametrize("module", MODULES)
def test_every_workflow_serialises_with_retries_and_timeouts(module: str) -> None:
    for wf in workflows_of(module):
        _check_serialised(wf)


def _check_serialised(wf: WorkflowBase) -> None:
    mapping = serialize(wf)
    templates = [spec.template for spec in mapping.values() if isinstance(spec, TaskSpec)]
    assert templates, f"{wf.name} registers no tasks"
    for t in templates:
        where = f"{wf.name}: task {t.id.name}"
        assert t.metadata.retries.retries >= 1, f"{where} has no retries"
        assert t.metadata.timeout is not None and t.metadata.timeout.total_seconds() > 0, f"{where} has no timeout"
        if t.metadata.discoverable:
            assert t.metadata.discovery_version, f"{where} is cached without a cache_version"
        # Every job, SageMaker's included, runs the image the workflows are registered with.
        if t.container is not None:
            assert t.container.image == f"{IMAGE_FQN}:{IMAGE_TAG}", where
        if t.type == BATCH_TRANSFORM_TASK_TYPE:
            assert t.custom["image"] == f"{IMAGE_FQN}:{IMAGE_TAG}", where


def test_deterministic_steps_are_cached() -> None:
    # A mapped task registers as `map_<task>_<hash>-arraynode`; name it after the task it maps.
    cached = {
        re.sub(r"^map_(.+)_[0-9a-f]{32}-arraynode$", r"\1", t.id.name.rsplit(".", 1)[-1])
        for wf in all_workflows()
        for spec in serialize(wf).values()
        if isinstance(spec, TaskSpec) and (t := spec.template).metadata.discoverable
    }
    assert {
        "train_model",
        "preprocess_data_sagemaker",
        "train_model_sagemaker",
        "batch_transform_sagemaker",
        "train_cnn",
        "segment_risk_report",
        "score_segment",
    } <= cached
    # Steps reading a *location* must not be cached: the same path holds new data tomorrow.
    assert not cached & {"ingest_raw_data", "preprocess_data", "export_applications", "prepare_segments"}


PRODUCTION_ENV = {
    "FLYTE_DOMAIN": "production",
    "CDAO_AWS_REGION": "us-east-1",
    "CDAO_SAGEMAKER_ROLE_ARN": "arn:aws:iam::111122223333:role/cdao-prod-sagemaker-exec",
    "CDAO_DEFAULT_BUCKET": "cdao-prod-ml-artifacts",
}
_NO_SETTINGS = {
    "FLYTE_DOMAIN": "staging",
    "CDAO_AWS_REGION": "",
    "CDAO_SAGEMAKER_ROLE_ARN": "",
    "CDAO_DEFAULT_BUCKET": "",
}
# The `pyflyte package` runs the tests below read, by name, and the environment of each.
PACKAGE_RUNS = {
    "development": {},
    "production": PRODUCTION_ENV,
    "no settings": _NO_SETTINGS,
    "no role": {**_NO_SETTINGS, "CDAO_DEFAULT_BUCKET": "cdao-staging-ml-artifacts"},
}


@pytest.fixture(scope="module")
def packages(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Callable[[str], tuple[int, str, list[str]]]]:
    """``packages(run)``: the exit code, output and archive members of one of :data:`PACKAGE_RUNS`.
    Each runs in the stack's environment as CI exports it (tests/workflows/conftest.py), with the
    run's changes. The four runs start together at first use: each spends seconds importing every pipeline, and
    waited for one after another they took 17 s of the suite."""
    started = {}
    for name, env in PACKAGE_RUNS.items():
        out = tmp_path_factory.mktemp("package") / "flyte-package.tgz"
        args = ["--pkgs", "workflows", "package", "--image", f"{IMAGE_FQN}:{IMAGE_TAG}", "--output", str(out), "-f"]
        started[name] = (start_cli(args, cwd=ROOT, env={**STACK_ENV, **env}), out)
    results: dict[str, tuple[int, str, list[str]]] = {}

    def result(name: str) -> tuple[int, str, list[str]]:
        if name not in results:
            proc, out = started[name]
            stdout, stderr = proc.communicate(timeout=240)
            names: list[str] = []
            if out.exists():
                with tarfile.open(out) as tar:
                    names = tar.getnames()
            results[name] = (proc.returncode, stdout + stderr, names)
        return results[name]

    try:
        yield result
    finally:
        for proc, _ in started.values():
            if proc.poll() is None:
                proc.kill()
                proc.communicate()


def test_pyflyte_package_contains_every_workflow(packages: Callable[[str], tuple[int, str, list[str]]]) -> None:
    code, log, names = packages("development")
    assert code == 0, log
    for wf in all_workflows():
        assert any(f"_{wf.name}_2.pb" in n for n in names), f"{wf.name} missing from the package: {names}"
    assert any("credit_scoring_batch_prediction" in n for n in names)
    # Outside production the nightly schedule is not even built, so it cannot be activated there.
    assert not any("credit_scoring_nightly" in n for n in names)


def test_production_package_adds_the_nightly_schedule(packages: Callable[[str], tuple[int, str, list[str]]]) -> None:
    code, log, names = packages("production")
    assert code == 0, log
    assert any("credit_scoring_nightly" in n for n in names), names


def test_registration_without_the_stacks_aws_settings_fails_naming_them(
    packages: Callable[[str], tuple[int, str, list[str]]],
) -> None:
    code, log, _ = packages("no settings")
    assert code != 0
    assert "CDAO_DEFAULT_BUCKET" in log
    code, log, _ = packages("no role")
    assert code != 0
    assert "CDAO_SAGEMAKER_ROLE_ARN" in log
