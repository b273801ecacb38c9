"""The task image (workflows/Dockerfile) installs what the lock pins, with the GPU build of torch."""

from __future__ import annotations

import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
DOCKERFILE = (ROOT / "workflows" / "Dockerfile").read_text()


def _lock_version(name: str) -> set[str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["version"] for p in lock["package"] if p["name"] == name}


def test_torch_is_the_locked_version_in_its_cuda_build():
    (arg,) = re.findall(r"^ARG TORCH_VERSION=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert {v.split("+")[0] for v in _lock_version("torch")} == {arg}
    assert "+cpu" not in arg


def test_base_images_are_pinned_and_the_user_is_not_root():
    (python,) = re.findall(r"^ARG PYTHON_IMAGE=(\S+)$", DOCKERFILE, re.MULTILINE)
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", python)
    assert re.search(r"^FROM ghcr\.io/astral-sh/uv:\d+\.\d+\.\d+ AS uv$", DOCKERFILE, re.MULTILINE)
    (user,) = re.findall(r"^USER (\d+):(\d+)$", DOCKERFILE, re.MULTILINE)
    assert user != ("0", "0")


@pytest.mark.skipif(shutil.which("uv") is None, reason="the image build exports requirements with uv")
def test_the_exports_the_image_installs_resolve_from_the_lock():
    def export(*args: str) -> str:
        result = subprocess.run(
            ["uv", "export", "--frozen", "--no-hashes", *args], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return result.stdout

    training = export("--only-group", "training", "--no-emit-package", "torch")
    assert not re.search(r"^torch==", training, re.MULTILINE)
    for name in ("scikit-learn", "xgboost-cpu", "mlflow-skinny"):  # what the tasks import
        (version,) = _lock_version(name)
        assert f"{name}=={version}" in training
    plugins = export("--no-dev", "--package", "cdao-plugins", "--no-emit-workspace")
    (flytekit,) = _lock_version("flytekit")
    assert f"flytekit=={flytekit}" in plugins


def test_sagemaker_can_start_the_image_as_a_model_server():
    # `docker run <image> serve` must find the SDK's server on PATH.
    (target,) = re.findall(r"^RUN ln -s (\S+) /usr/local/bin/serve$", DOCKERFILE, re.MULTILINE)
    scripts = tomllib.loads((ROOT / "plugins" / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[Path(target).name] == "cdao_connectors.sagemaker.serving:main"
    assert target.startswith("/opt/venv/bin/")
