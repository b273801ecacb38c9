"""The benchmarks in plugins/benchmarks reuse the connector tests' helpers (tests/plugins/support)
and the standard library instead of keeping copies, and still run end to end. They measure; nothing
here passes or fails on time."""

from __future__ import annotations

import ast
import importlib.util
import re
import sys
import time
from pathlib import Path

import pytest
import yaml
from flytekit.extend.backend.base_connector import ConnectorRegistry

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
    # The baseline connector registers itself in flytekit's process-wide registry: taken out again
    # afterwards, so that later tests see only the service's own connectors.
    monkeypatch.setattr(ConnectorRegistry, "_REGISTRY", dict(ConnectorRegistry._REGISTRY))
    monkeypatch.setattr(ConnectorRegistry, "_METADATA", dict(ConnectorRegistry._METADATA))
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
    # The baseline really reads each job on each GetTask (4 jobs a round), the connector does not.
    naive = float(re.search(r"naive: aws_api_calls_per_round=([\d.]+)", out).group(1))
    assert naive >= 4


def _latency_benchmark(monkeypatch: pytest.MonkeyPatch):
    monkeypatch.syspath_prepend(str(BENCHMARKS))
    spec = importlib.util.spec_from_file_location("get_task_latency", BENCHMARKS / "get_task_latency.py")
    assert spec and spec.loader
    module = importlib.util.module_from_spec(spec)
    monkeypatch.setitem(sys.modules, "get_task_latency", module)
    spec.loader.exec_module(module)
    return module


def test_polling_settings_are_our_values_with_the_connector_plugins_defaults(tmp_path: Path) -> None:
    from propeller_polling import PollingSettings, connector_service_values  # noqa: PLC0415

    values = tmp_path / "values.yaml"
    section = {"defaultConnector": {"endpoint": "k8s://x:8000"}, "webApi": {"caching": {"size": 10}}}
    values.write_text(yaml.safe_dump({"configmap": {"enabled_plugins": {"plugins": {"connector-service": section}}}}))
    # connector/config.go defaultConfig at flyteplugins/v1.16.8 for every key left unset.
    assert PollingSettings.from_values(values) == PollingSettings(10, 10.0, 100, 30.0, 10.0)
    section["webApi"] = {"caching": {"workers": 40, "resyncInterval": "1m"}, "readRateLimiter": {"qps": 300}}
    section["defaultConnector"]["defaultTimeout"] = "30s"
    values.write_text(yaml.safe_dump({"configmap": {"enabled_plugins": {"plugins": {"connector-service": section}}}}))
    assert PollingSettings.from_values(values) == PollingSettings(40, 300.0, 100, 60.0, 30.0)
    assert connector_service_values(values) == section


def test_a_duration_that_is_not_gos_is_refused_naming_where() -> None:
    from propeller_polling import go_duration  # noqa: PLC0415

    assert go_duration("1m30s", "x") == 90.0 and go_duration("500ms", "x") == 0.5 and go_duration("0", "x") == 0
    with pytest.raises(ValueError, match=r"webApi.caching.resyncInterval: '30' is not a Go duration"):
        go_duration("30", "webApi.caching.resyncInterval")


def test_the_poller_keeps_propellers_workers_rate_and_resync() -> None:
    """Workers bound concurrency, the token bucket bounds starts to burst + qps * t (x/time/rate),
    and every task is polled again each resync interval."""
    from propeller_polling import AutoRefreshPoller, PollingSettings  # noqa: PLC0415

    settings = PollingSettings(workers=3, qps=200.0, burst=5, resync_seconds=0.1, timeout_seconds=1.0)

    def get(key: object) -> bool:
        time.sleep(0.01)
        return key != "broken"

    keys = [f"t{i}" for i in range(9)] + ["broken"]
    poller = AutoRefreshPoller(keys, get, settings)
    begun = time.monotonic()
    poller.start()
    time.sleep(0.5)
    poller.stop()
    syncs = sorted(poller.syncs, key=lambda s: s.started)
    assert poller.max_in_flight <= settings.workers
    for n, sync in enumerate(syncs, start=1):
        assert n <= settings.burst + settings.qps * (sync.started - begun) + 1
    per_key = {k: [s for s in syncs if s.key == k] for k in keys}
    assert all(len(mine) >= 2 for mine in per_key.values()), {k: len(v) for k, v in per_key.items()}
    assert not any(s.ok for s in per_key["broken"]) and all(s.ok for s in per_key["t0"])


def test_the_status_age_is_the_interval_between_answered_gettasks(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    bench = _latency_benchmark(monkeypatch)
    from propeller_polling import Sync  # noqa: PLC0415

    class Quiet:
        max_in_flight = 1

    class NoWindow:
        def summary(self) -> str:
            return "window"

    syncs = [
        Sync(("batch", 0), 0.0, 0.01, True),
        Sync(("batch", 0), 30.0, 30.02, False),  # an error refreshes nothing
        Sync(("batch", 0), 60.0, 60.01, True),
        Sync(("batch", 1), 1.0, 1.01, True),
    ]
    bench._report("label", syncs, {"batch": 2, "codeweave": 1}, NoWindow(), Quiet())
    out = capsys.readouterr().out
    assert "batch: calls=4 " in out and "errors=1 " in out
    assert "status_age_p50_s=60.0 status_age_p99_s=60.0 status_age_max_s=60.0 refreshed_twice=1/2" in out
    assert "codeweave: calls=0" in out
