"""The connector image cannot be built here (no Docker daemon); check what it promises instead."""

from __future__ import annotations

import importlib
import json
import re
from pathlib import Path

from flytekit.extend.backend.base_connector import ConnectorRegistry

DOCKERFILE = Path(__file__).resolve().parents[2] / "plugins" / "Dockerfile"


def _instructions() -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", DOCKERFILE.read_text())
    return [
        (m.group(1).upper(), m.group(2).strip())
        for line in text.splitlines()
        if (m := re.match(r"^\s*([A-Za-z]+)\s+(.*)$", line)) and not line.lstrip().startswith("#")
    ]


def test_image_serves_the_connector_modules_as_non_root_from_pinned_images():
    ins = _instructions()
    entry = json.loads(next(v for k, v in ins if k == "ENTRYPOINT"))
    cmd = json.loads(next(v for k, v in ins if k == "CMD"))
    assert entry == ["pyflyte", "serve", "connector"]
    assert cmd[cmd.index("--port") + 1] == "8000" and cmd[cmd.index("--prometheus_port") + 1] == "9090"
    module = cmd[cmd.index("--modules") + 1]
    importlib.import_module(module)
    served = {c.name for a in ConnectorRegistry.list_connectors() for c in a.supported_task_categories}
    assert {"cdao-codeweave-gpu", "cdao-aws-batch", "cdao-emr-spark-step", "emr_serverless"} <= served

    images = [v.split()[0] for k, v in ins if k == "FROM"]
    args = dict(v.split("=", 1) for k, v in ins if k == "ARG" and "=" in v)
    resolved = [args.get(i.strip("${}"), i) for i in images]
    assert all(":" in i and not i.endswith(":latest") for i in resolved), resolved
    user = [v for k, v in ins if k == "USER"][-1]
    assert not user.startswith(("0", "root"))
    runs = " ".join(v for k, v in ins if k == "RUN")
    assert "uv sync --frozen --no-dev --package cdao-plugins" in runs
