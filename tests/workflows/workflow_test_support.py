"""Helpers of the pipeline tests: serialisation as `pyflyte package` does it, and the pyflyte CLI."""

from __future__ import annotations

import os
import subprocess
import sys
from collections import OrderedDict
from pathlib import Path
from typing import Any

from flytekit.configuration import Image, ImageConfig, SerializationSettings
from flytekit.models.task import TaskSpec
from flytekit.tools.translator import get_serializable

ROOT = Path(__file__).resolve().parents[2]
PYFLYTE = str(Path(sys.executable).parent / "pyflyte")
IMAGE_FQN, IMAGE_TAG = "111122223333.dkr.ecr.us-east-1.amazonaws.com/cdao/ml", "abc1234"
# What CI exports when it registers to a stack; the SDK reads them only to serialise tasks.
STACK_ENV = {
    "CDAO_AWS_REGION": "us-east-1",
    "CDAO_SAGEMAKER_ROLE_ARN": "arn:aws:iam::111122223333:role/cdao-dev-sagemaker-exec",
    "CDAO_DEFAULT_BUCKET": "cdao-dev-ml-artifacts",
}


def serialization_settings(domain: str = "development") -> SerializationSettings:
    return SerializationSettings(
        image_config=ImageConfig(default_image=Image(name="default", fqn=IMAGE_FQN, tag=IMAGE_TAG)),
        project="ml-experiments",
        domain=domain,
        version="test",
    )


def serialize(entity: Any, domain: str = "development") -> OrderedDict:
    mapping: OrderedDict = OrderedDict()
    get_serializable(mapping, serialization_settings(domain), entity)
    return mapping


def task_templates(entity: Any) -> dict[str, Any]:
    """Every task template a workflow (or task) registers, by short task name."""
    return {
        spec.template.id.name.rsplit(".", 1)[-1]: spec.template
        for spec in serialize(entity).values()
        if isinstance(spec, TaskSpec)
    }


def _cli_env(env: dict[str, str] | None) -> dict[str, str]:
    full_env = {k: v for k, v in os.environ.items() if k != "FLYTE_DOMAIN"}
    full_env.update({"FLYTE_LOCAL_CACHE_ENABLED": "false", **(env or {})})
    return full_env


def start_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None) -> subprocess.Popen:
    """``pyflyte <args>`` started, not waited for: runs that do not depend on each other share the
    machine's cores instead of waiting in line (each spends seconds importing the pipelines)."""
    return subprocess.Popen(
        [PYFLYTE, *args], cwd=cwd, env=_cli_env(env), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )


def run_cli(args: list[str], cwd: Path, env: dict[str, str] | None = None, timeout: int = 120) -> Any:
    return subprocess.run(
        [PYFLYTE, *args], cwd=cwd, env=_cli_env(env), capture_output=True, text=True, timeout=timeout, check=False
    )
