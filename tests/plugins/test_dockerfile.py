"""The images cannot be built here (no Docker daemon); check what plugins/Dockerfile promises instead.

One Dockerfile builds both images from one first stage (`build-base`: uv, Python, the lock): target
`connector` (the connector service) and target `tasks` (what Flyte runs workflows/' tasks in).
"""

from __future__ import annotations

import importlib
import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
from dockerfile import DOCKERFILE, base, stages
from flytekit.extend.backend.base_connector import ConnectorRegistry

ROOT = Path(__file__).resolve().parents[2]


def _lock_version(name: str) -> set[str]:
    lock = tomllib.loads((ROOT / "uv.lock").read_text())
    return {p["version"] for p in lock["package"] if p["name"] == name}


def _image(target: str) -> list[tuple[str, str]]:
    """The instructions of a target and of the build stage it copies /opt/venv from."""
    final = stages()[target]
    (source,) = [re.search(r"--from=(\S+)", v)[1] for k, v in final if k == "COPY" and "--from=" in v]
    return stages()[source] + final


def test_both_images_build_from_the_one_base_stage() -> None:
    """The first stage has one owner: no other Dockerfile in the repository, and each image's build
    stage starts from `build-base`, which copies the lock."""
    others = [
        p.relative_to(ROOT)
        for p in ROOT.rglob("*Dockerfile*")
        if p != DOCKERFILE and p.name != "Dockerfile.dockerignore" and not {".venv", "tools", ".git"} & set(p.parts)
    ]
    assert others == []
    all_stages = stages()
    assert {"connector", "tasks"} <= set(all_stages)
    for target in ("connector", "tasks"):
        final = all_stages[target]
        (source,) = [re.search(r"--from=(\S+)", v)[1] for k, v in final if k == "COPY" and "--from=" in v]
        assert base(all_stages[source]) == "build-base", f"{target} builds from {base(all_stages[source])}"
    assert ("COPY", "pyproject.toml uv.lock ./") in all_stages["build-base"]


@pytest.mark.parametrize("target", ["connector", "tasks"])
def test_images_are_pinned_and_run_as_non_root(target: str) -> None:
    all_stages = stages()
    args = dict(v.split("=", 1) for k, v in all_stages[""] if k == "ARG" and "=" in v)
    chain = [base(all_stages[target]), *(base(s) for s in all_stages.values() if s)]
    resolved = {args.get(i.strip("${}"), i) for i in chain if i not in all_stages}
    assert all(":" in i and not i.endswith(":latest") for i in resolved), resolved
    assert re.fullmatch(r"python:3\.11\.\d+-slim-bookworm", args["PYTHON_IMAGE"])
    (user,) = [v for k, v in all_stages[target] if k == "USER"]
    assert re.fullmatch(r"\d+:\d+", user) and not user.startswith("0:")


def test_connector_image_serves_the_connector_modules() -> None:
    ins = _image("connector")
    entry = json.loads(next(v for k, v in ins if k == "ENTRYPOINT"))
    cmd = json.loads(next(v for k, v in ins if k == "CMD"))
    assert entry == ["pyflyte", "serve", "connector"]
    assert cmd[cmd.index("--port") + 1] == "8000" and cmd[cmd.index("--prometheus_port") + 1] == "9090"
    module = cmd[cmd.index("--modules") + 1]
    importlib.import_module(module)
    served = {c.name for a in ConnectorRegistry.list_connectors() for c in a.supported_task_categories}
    assert {"cdao-codeweave-gpu", "cdao-aws-batch", "cdao-emr-spark-step", "emr_serverless"} <= served
    runs = " ".join(v for k, v in ins if k == "RUN")
    assert "uv sync --frozen --no-dev --package cdao-plugins" in runs


def test_tasks_image_has_torch_at_the_locked_version_in_its_cuda_build() -> None:
    (arg,) = [v.split("=", 1)[1] for k, v in _image("tasks") if k == "ARG" and v.startswith("TORCH_VERSION=")]
    assert {v.split("+")[0] for v in _lock_version("torch")} == {arg}
    assert "+cpu" not in arg


@pytest.mark.skipif(shutil.which("uv") is None, reason="the image build exports requirements with uv")
def test_the_exports_the_tasks_image_installs_resolve_from_the_lock() -> None:
    def export(*args: str) -> str:
        result = subprocess.run(
            ["uv", "export", "--frozen", "--no-hashes", *args], cwd=ROOT, capture_output=True, text=True, check=True
        )
        return result.stdout

    runs = " ".join(v for k, v in _image("tasks") if k == "RUN")
    assert "uv export --frozen --only-group training --no-emit-package torch" in runs
    training = export("--only-group", "training", "--no-emit-package", "torch")
    assert not re.search(r"^torch==", training, re.MULTILINE)
    for name in ("scikit-learn", "xgboost-cpu", "mlflow-skinny"):  # what the tasks import
        (version,) = _lock_version(name)
        assert f"{name}=={version}" in training
    plugins = export("--no-dev", "--package", "cdao-plugins", "--no-emit-workspace")
    (flytekit,) = _lock_version("flytekit")
    assert f"flytekit=={flytekit}" in plugins


def test_sagemaker_can_start_the_tasks_image_as_a_model_server() -> None:
    # `docker run <image> serve` must find the SDK's server on PATH.
    (target,) = [
        m[1] for k, v in _image("tasks") if k == "RUN" and (m := re.fullmatch(r"ln -s (\S+) /usr/local/bin/serve", v))
    ]
    scripts = tomllib.loads((ROOT / "plugins" / "pyproject.toml").read_text())["project"]["scripts"]
    assert scripts[Path(target).name] == "cdao_connectors.sagemaker.serving:main"
    assert target.startswith("/opt/venv/bin/")


def test_the_build_context_holds_what_the_stages_copy() -> None:
    """plugins/Dockerfile.dockerignore lets in every path a COPY from the context names."""
    ignore = (ROOT / "plugins" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = [line[1:] for line in ignore if line.startswith("!")]
    for stage in stages().values():
        for k, v in stage:
            if k != "COPY" or v.startswith("--from="):
                continue
            for source in (s.rstrip("/") for s in v.split()[:-1]):
                assert any(a == source or a.startswith(f"{source}/") for a in allowed), f"COPY {source} is ignored"
