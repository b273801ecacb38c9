"""A run without the seeds is a visible skip on a laptop and a failure in CI (support/seeds.py)."""

from __future__ import annotations

from pathlib import Path

import pytest
from _pytest.outcomes import Failed, Skipped
from seeds import seeds_dir


def test_missing_seeds_fail_a_ci_run_naming_where_they_must_be(tmp_path: Path) -> None:
    missing = tmp_path / "no-seeds"
    with pytest.raises(Failed, match=f"not at {missing}.*CDAO_SEEDS_DIR.*CI is set"):
        seeds_dir({"CDAO_SEEDS_DIR": str(missing), "CI": "true"})


@pytest.mark.parametrize("ci", [None, "", "false", "0"])
def test_missing_seeds_are_a_visible_skip_outside_ci(tmp_path: Path, ci: str | None) -> None:
    environ = {"CDAO_SEEDS_DIR": str(tmp_path / "no-seeds")}
    if ci is not None:
        environ["CI"] = ci
    with pytest.raises(Skipped, match="CDAO_SEEDS_DIR"):
        seeds_dir(environ)


def test_present_seeds_are_used(tmp_path: Path) -> None:
    assert seeds_dir({"CDAO_SEEDS_DIR": str(tmp_path), "CI": "true"}) == tmp_path


def test_a_ci_run_without_seeds_by_design_says_so_and_is_skipped(tmp_path: Path) -> None:
    environ = {"CDAO_SEEDS_DIR": str(tmp_path / "no-seeds"), "CI": "true", "CDAO_SEEDS": "absent"}
    with pytest.raises(Skipped, match="CDAO_SEEDS=absent"):
        seeds_dir(environ)


def test_the_pull_request_workflow_declares_it_has_no_seeds() -> None:
    """GitHub's runner has no ../shared: the workflow must say so, or every pull request fails here."""
    import yaml  # noqa: PLC0415

    workflow = Path(__file__).resolve().parents[2] / ".github" / "workflows" / "pull-request.yml"
    jobs = yaml.safe_load(workflow.read_text(encoding="utf-8"))["jobs"]
    runs = [step for job in jobs.values() for step in job.get("steps", []) if step.get("run") == "bash .ci/run"]
    assert runs, "pull-request.yml no longer runs .ci/run"
    assert all(step.get("env", {}).get("CDAO_SEEDS") == "absent" for step in runs)
