"""The images cannot be built here (no Docker daemon); check what plugins/Dockerfile promises instead.

One Dockerfile builds the images from one first stage (`build-base`: uv, Python, the lock): target
`connector` (the connector service), target `tasks` (what Flyte runs workflows/' tasks in) and target
`emr-serverless` (the stack's EMR Serverless application, where a Python @spark_task runs).
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
    """The instructions of a target, of the build stage it copies /opt/venv from and of the stages
    that build stage copies from (the exported requirements)."""
    all_stages = stages()
    final = all_stages[target]
    (source,) = {re.search(r"--from=(\S+)", v)[1] for k, v in final if k == "COPY" and "--from=" in v}
    build = all_stages[source]
    inputs = {re.search(r"--from=(\S+)", v)[1] for k, v in build if k == "COPY" and "--from=" in v}
    return [i for name in sorted(inputs & set(all_stages)) for i in all_stages[name]] + build + final


def _args() -> dict[str, str]:
    """The global ARGs' defaults."""
    return dict(v.split("=", 1) for k, v in stages()[""] if k == "ARG" and "=" in v)


def _resolve(image: str) -> str:
    args = _args()
    for _ in range(3):  # an ARG may name an earlier one
        image = re.sub(r"\$\{(\w+)\}", lambda m: args[m[1]], image)
    return image


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
    assert {"connector", "tasks", "emr-serverless"} <= set(all_stages)
    for target in ("connector", "tasks"):
        final = all_stages[target]
        (source,) = [re.search(r"--from=(\S+)", v)[1] for k, v in final if k == "COPY" and "--from=" in v]
        assert base(all_stages[source]) == "build-base", f"{target} builds from {base(all_stages[source])}"
    assert ("COPY", "pyproject.toml uv.lock ./") in all_stages["build-base"]
    # The task environments install what one stage exported from the lock.
    assert base(all_stages["requirements"]) == "build-base"
    for build in ("tasks-build", "emr-serverless-build"):
        assert ("COPY", "--from=requirements /requirements/ /requirements/") in all_stages[build]


@pytest.mark.parametrize("target", ["connector", "tasks"])
def test_images_are_pinned_and_run_as_non_root(target: str) -> None:
    all_stages = stages()
    args = _args()
    chain = [base(all_stages[target]), *(base(s) for n, s in all_stages.items() if s and "emr-serverless" not in n)]
    resolved = {_resolve(i) for i in chain if i not in all_stages}
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
    assert ("ARG", "TORCH_VERSION") in _image("tasks")
    arg = _args()["TORCH_VERSION"]
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


def test_the_build_context_holds_every_package_the_plugins_wheel_ships() -> None:
    """`COPY plugins/ plugins/` copies only what plugins/Dockerfile.dockerignore lets in, and the
    images install the plugins project, whose wheel lists its packages in plugins/pyproject.toml
    (hatch `tool.hatch.build.targets.wheel.packages`): a package left out of the context builds an
    image whose imports fail (the SDK's `cdao_authority`, the connectors' `cdao_connector_resources`)."""
    ignore = (ROOT / "plugins" / "Dockerfile.dockerignore").read_text().splitlines()
    allowed = {line[1:] for line in ignore if line.startswith("!")}
    project = tomllib.loads((ROOT / "plugins" / "pyproject.toml").read_text())
    shipped = project["tool"]["hatch"]["build"]["targets"]["wheel"]["packages"]
    missing = [name for name in shipped if f"plugins/{name}/**" not in allowed]
    assert missing == [], f"plugins/Dockerfile.dockerignore leaves out {missing}"


def test_emr_serverless_image_builds_on_aws_s_base_image_of_the_application_s_release() -> None:
    """The application (infra) and the image's base must name one release: EMR Serverless runs a custom
    image only on the release it was built from ("Customizing an EMR Serverless image",
    https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/application-custom-image.html)."""
    from infra.components.compute import EMR_RELEASE  # noqa: PLC0415

    all_stages = stages()
    for stage in ("emr-serverless-build", "emr-serverless"):
        assert _resolve(base(all_stages[stage])) == f"public.ecr.aws/emr-serverless/spark/{EMR_RELEASE}:latest"
    assert _args()["EMR_RELEASE"] == EMR_RELEASE


def test_emr_serverless_image_runs_as_hadoop_like_its_base() -> None:
    """AWS: a customized image sets the user back to hadoop:hadoop (same page as above); installing
    needs root, which only the build stage uses."""
    build, final = stages()["emr-serverless-build"], stages()["emr-serverless"]
    assert ("USER", "root") in build
    assert [v for k, v in final if k == "USER"] == ["hadoop:hadoop"]
    assert final[-1] == ("USER", "hadoop:hadoop")


def test_emr_serverless_image_has_the_tasks_environment_under_the_python_the_tasks_name() -> None:
    """Same Python minor as the lock (3.11: the base image's python3 is older), the same locked installs
    as the tasks image, into the venv whose interpreter the SDK names in sparkSubmitParameters."""
    from cdao_connectors.emr.task import EMR_SERVERLESS_PYTHON  # noqa: PLC0415

    all_stages = stages()
    args = _args()
    assert args["PYTHON_IMAGE"].startswith(f"python:{args['PYTHON_VERSION']}-")
    requires = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["requires-python"]
    assert requires == ">=3.11,<3.12" and args["PYTHON_VERSION"].startswith("3.11.")

    def installs(stage: str) -> list[str]:
        return [v for k, v in all_stages[stage] if k == "RUN" and "uv pip install" in v]

    assert installs("emr-serverless-build") == installs("tasks-build") != []
    assert ("ARG", "TORCH_VERSION") in all_stages["emr-serverless-build"]
    venv = str(Path(EMR_SERVERLESS_PYTHON).parent.parent)
    build_runs = " ".join(v for k, v in all_stages["emr-serverless-build"] if k == "RUN")
    assert f'uv venv --python "${{PYTHON_VERSION}}" {venv}' in build_runs
    assert all(f"--python {EMR_SERVERLESS_PYTHON} " in i for i in installs("emr-serverless-build"))
    final = all_stages["emr-serverless"]
    copied = {v.split()[-1] for k, v in final if k == "COPY"}
    assert {venv, "/opt/python"} <= copied  # the venv and the interpreter it links to
    # The plugin's entrypoint starts `pyflyte-execute` by name (awsemrserverless/_entrypoint.py main).
    (path,) = [v for k, v in final if k == "ENV" and v.startswith("PATH=")]
    assert path.startswith(f"PATH={venv}/bin:")
