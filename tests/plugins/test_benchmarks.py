"""The benchmarks in plugins/benchmarks reuse the connector tests' helpers (tests/plugins/support)
and the standard library instead of keeping copies, and still run end to end. They measure; nothing
here passes or fails on time."""

from __future__ import annotations

import ast
import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCHMARKS = ROOT / "plugins" / "benchmarks"
SUPPORT = ROOT / "tests" / "plugins" / "support"


def _function_bodies(path: Path) -> dict[str, str]:
    tree = ast.parse(path.read_text())
    return {
        f"{path.relative_to(ROOT)}::{node.name}": ast.dump(ast.Module(body=node.body, type_ignores=[]))
        for node in ast.walk(tree)
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef)
    }


def test_no_benchmark_keeps_a_copy_of_a_helper() -> None:
    bodies: dict[str, list[str]] = {}
    for path in sorted([*BENCHMARKS.glob("*.py"), *SUPPORT.glob("*.py")]):
        for name, body in _function_bodies(path).items():
            bodies.setdefault(body, []).append(name)
    copies = [names for names in bodies.values() if len(names) > 1 and any("benchmarks" in n for n in names)]
    assert copies == [], f"the same function body in several places: {copies}"


def test_batch_polling_runs_small(capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("batch_polling", BENCHMARKS / "batch_polling.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "batch_polling", module)
    spec.loader.exec_module(module)
    # main() points this process at its moto server; monkeypatch puts the variables back afterwards.
    for key in (
        *("AWS_ENDPOINT_URL", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY", "AWS_REGION", "CDAO_AWS_REGION"),
        *("CDAO_BATCH_SPOT_QUEUE", "CDAO_BATCH_ON_DEMAND_QUEUE", "CDAO_BATCH_STATUS_REFRESH_SECONDS"),
        *("CDAO_ATTEMPT_TABLE", "CDAO_STACK"),
    ):
        monkeypatch.setenv(key, "unset")
    assert module.main(["--jobs", "4", "--rounds", "2", "--interval", "0.2", "--workers", "2"]) == 0
    out = capsys.readouterr().out
    assert "connector: aws_api_calls_per_round=" in out and "naive: aws_api_calls_per_round=" in out
    assert "api_calls_ratio=" in out
