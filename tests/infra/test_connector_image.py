"""The connector image a stack runs is the one CI built for the stack's revision (issue 15, fault 5).

deploy.yml pushes `<registry>/cdao-<stack>-connector:<commit>` (image-dev builds it, image-staging and
image-prod copy it by tag); the program hands the commit to platform/ as `cdao.io/connector-image-tag`
next to the stack's own repository `cdao.io/ecr-connector-repository`.
"""

from __future__ import annotations

import pytest

from cdao_cli.plan import report
from cdao_cli.plan.runner import OFFLINE_COMMIT, PlanRun, read_stack_file, run_program_with_config
from infra.config import ADDON_CHART_KEYS
from infra.images import REVISION_COMMIT_ENV
from tests.infra.plans import planned

COMMIT = "0123456789abcdef0123456789abcdef01234567"


def _annotations(run: PlanRun) -> dict[str, str]:
    (secret,) = [r for r in run.registrations if r.type == "kubernetes:core/v1:Secret"]
    return secret.inputs["metadata"]["annotations"]


def test_pinned_stack_runs_the_image_of_its_pin(plan_of) -> None:
    run = plan_of("prod")
    annotations = _annotations(run)
    assert annotations["cdao.io/connector-image-tag"] == run.config.gitops.revision
    (repo,) = [r for r in run.registrations if r.type == "aws:ecr/repository:Repository" and "connector" in r.name]
    assert annotations["cdao.io/ecr-connector-repository"] == repo.outputs["repositoryUrl"]
    assert repo.inputs["name"] == "cdao-prod-connector"  # what deploy.yml's image-prod pushes to


def test_branch_stack_runs_the_image_of_the_commit_its_deploy_resolved(monkeypatch) -> None:
    monkeypatch.setenv(REVISION_COMMIT_ENV, COMMIT)
    run = planned("dev")  # shared with every test planning dev with the same variables
    assert run.config.gitops.revision == "main"
    assert _annotations(run)["cdao.io/connector-image-tag"] == COMMIT
    assert run.revision_commit_stand_in is None


def test_branch_stack_without_the_commit_is_refused_before_anything_is_declared(monkeypatch) -> None:
    monkeypatch.delenv(REVISION_COMMIT_ENV, raising=False)
    raw, _ = read_stack_file("dev")
    registrations, error = run_program_with_config("dev", "us-east-1", raw, stand_in_revision_commit=False)
    assert error is not None
    assert REVISION_COMMIT_ENV in str(error)
    assert "cdao:gitops.revision = 'main'" in str(error)
    assert registrations == []


@pytest.mark.parametrize("value", ["main", "0123456", "0123456789ABCDEF0123456789ABCDEF01234567"])
def test_branch_stack_with_a_commit_that_is_not_a_full_sha_is_refused(monkeypatch, value: str) -> None:
    monkeypatch.setenv(REVISION_COMMIT_ENV, value)
    raw, _ = read_stack_file("dev")
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is not None
    assert f"{REVISION_COMMIT_ENV}={value!r}" in str(error)
    assert registrations == []


def test_pinned_stack_refuses_another_commit(monkeypatch) -> None:
    monkeypatch.setenv(REVISION_COMMIT_ENV, COMMIT)
    raw, _ = read_stack_file("staging")
    registrations, error = run_program_with_config("staging", "us-east-1", raw)
    assert error is not None
    assert "a deploy runs the pinned commit" in str(error)
    assert registrations == []


def test_offline_plan_stands_in_with_git_s_null_commit_and_says_so(monkeypatch) -> None:
    monkeypatch.delenv(REVISION_COMMIT_ENV, raising=False)
    run = planned("dev")  # shared with every test planning dev with the same variables
    assert _annotations(run)["cdao.io/connector-image-tag"] == OFFLINE_COMMIT == "0" * 40
    assert run.revision_commit_stand_in == OFFLINE_COMMIT
    plan = report.build_plan(run)
    assert f"{REVISION_COMMIT_ENV} stand-in {OFFLINE_COMMIT}" in report.render_text([plan])
    assert f"offline stand-in `{OFFLINE_COMMIT}`" in report.render_markdown([plan])
    # The stand-in never outlives the plan.
    import os  # noqa: PLC0415

    assert REVISION_COMMIT_ENV not in os.environ


def test_the_connector_has_no_chart_version_pin() -> None:
    """The image tag is the revision's commit; a version pin beside it would be a second, unused owner.

    staging and prod keep the key until a promotion moves their pin past this change: platform/ at their
    current pin still builds the connector's image tag from it (docs/github-setup.md, "Images built once,
    promoted by tag"), and `cdao promote` drops it with dev's chart versions.
    """
    assert ADDON_CHART_KEYS["connectors"] == ()
    raw, _ = read_stack_file("dev")
    assert raw["cdao:addons"]["connectors"] is True
    assert "cdao-connector" not in raw["cdao:gitops"]["chartVersions"]


def test_branch_stack_runs_platform_at_the_commit_its_deploy_resolved(monkeypatch) -> None:
    """dev follows `main`, but what it runs is the commit its deploy resolved and recorded: Argo CD's
    root Application (`spec.source.targetRevision`, argo-cd.readthedocs.io/en/stable/user-guide/
    tracking_strategies/: a commit SHA pins the manifests, a branch follows its tip) and the cluster
    Secret's `repo-revision` annotation name that commit, so a failed deploy of dev leaves dev's
    platform/ where its last successful deploy put it instead of following main's tip."""
    monkeypatch.setenv(REVISION_COMMIT_ENV, COMMIT)
    run = planned("dev")  # shared with every test planning dev with the same variables
    assert run.config.gitops.revision == "main"
    assert _annotations(run)["cdao.io/repo-revision"] == COMMIT
    (root,) = [r for r in run.registrations if r.type == "kubernetes:argoproj.io/v1alpha1:Application"]
    assert root.inputs["spec"]["source"]["targetRevision"] == COMMIT


def test_pinned_stack_runs_platform_at_its_pin(plan_of) -> None:
    run = plan_of("prod")
    assert _annotations(run)["cdao.io/repo-revision"] == run.config.gitops.revision
    (root,) = [r for r in run.registrations if r.type == "kubernetes:argoproj.io/v1alpha1:Application"]
    assert root.inputs["spec"]["source"]["targetRevision"] == run.config.gitops.revision
