"""The ECR repositories a promoted stack copies its images from (docs/github-setup.md, "Images built
once, promoted by tag"): `image-staging` reads dev's repositories and `image-prod` staging's, from
another account, with the downstream stack's ECR push role. A cross-account pull needs both that
role's IAM policy and the repository's policy to allow it
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policies.html), so the upstream's
program declares the repository policy naming exactly those roles (`cdao:storage.imagePullRoleArns`).
"""

from __future__ import annotations

import json

import pytest

from cdao_cli.plan.runner import read_stack_file, run_program_with_config
from infra.components.compute import IMAGE_COPY_ACTIONS

POLICY = "aws:ecr/repositoryPolicy:RepositoryPolicy"
REPOSITORY = "aws:ecr/repository:Repository"


def _policies(run) -> dict[str, dict]:
    """Repository name -> its policy document; each policy is a child of the repository it governs."""
    repositories = {r.urn: r for r in run.registrations if r.type == REPOSITORY}
    found = {}
    for policy in (r for r in run.registrations if r.type == POLICY):
        assert policy.parent_urn in repositories, policy.name
        repository = repositories[policy.parent_urn]
        assert policy.inputs["repository"] == repository.inputs["name"]
        found[repository.inputs["name"]] = json.loads(policy.inputs["policy"])
    return found


def test_the_copy_of_each_downstream_stack_may_pull_from_the_upstream_repositories_and_nothing_more(plan_of):
    run = plan_of("dev")
    roles = run.config.storage.image_pull_role_arns
    # dev is staging's upstream: staging's image job copies with staging's ECR push role.
    assert roles == ["arn:aws:iam::111122223333:role/cdao-github-ecr-push-staging"]
    policies = _policies(run)
    assert set(policies) == {"cdao-dev-connector", "cdao-dev-tasks"}
    for document in policies.values():
        (statement,) = document["Statement"]
        assert statement["Effect"] == "Allow"
        assert statement["Principal"] == {"AWS": roles}
        assert sorted(statement["Action"]) == sorted(IMAGE_COPY_ACTIONS)
        assert "Resource" not in statement and "Condition" not in statement
    # Read only: nothing that writes, deletes or changes a repository or its policy.
    assert set(IMAGE_COPY_ACTIONS) == {
        "ecr:BatchGetImage",
        "ecr:GetDownloadUrlForLayer",
        "ecr:BatchCheckLayerAvailability",
    }


def test_a_stack_nothing_is_promoted_from_declares_no_repository_policy(plan_of):
    run = plan_of("prod")
    assert run.config.storage.image_pull_role_arns == []
    assert _policies(run) == {}


@pytest.mark.parametrize("arn", ["arn:aws:iam::111122223333:user/someone", "cdao-github-ecr-push-staging", "*"])
def test_a_pull_principal_that_is_not_a_role_arn_is_refused_with_its_key(arn):
    raw, _ = read_stack_file("dev")
    raw["cdao:storage"] = {**raw["cdao:storage"], "imagePullRoleArns": [arn]}
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is not None
    assert "cdao:storage.imagePullRoleArns" in str(error)
    assert registrations == []
