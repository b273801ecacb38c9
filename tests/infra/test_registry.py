"""The ECR repositories a promoted stack copies its images from (docs/github-setup.md, "Images built
once, promoted by tag"): `image-staging` reads dev's repositories and `image-prod` staging's, from
another account, with the downstream stack's ECR push role. A cross-account pull needs both that
role's IAM policy and the repository's policy to allow it
(https://docs.aws.amazon.com/AmazonECR/latest/userguide/repository-policies.html), so the upstream's
program declares the repository policy naming exactly those roles (`cdao:storage.imagePullRoleArns`).

EMR Serverless pulls its application's custom image as its service principal, so the `emr-serverless`
repository's policy also lets that principal pull, for this account's applications only (AWS: "Customizing
an EMR Serverless image", https://docs.aws.amazon.com/emr/latest/EMR-Serverless-UserGuide/application-custom-image.html;
the repository policy of aws-samples/emr-serverless-samples examples/pyspark/custom-images/README.md at
7dd33070: principal `emr-serverless.amazonaws.com`, ecr:BatchGetImage, ecr:DescribeImages,
ecr:GetDownloadUrlForLayer, `aws:SourceArn` like `arn:aws:emr-serverless:<region>:<account>:/applications/*`).
"""

from __future__ import annotations

import json
from fnmatch import fnmatchcase

import pytest

from cdao_cli.plan.mocks import ACCOUNT_ID
from cdao_cli.plan.runner import read_stack_file, run_program_with_config, run_stack
from infra.components.compute import EMR_SERVERLESS_PULL_ACTIONS, IMAGE_COPY_ACTIONS
from infra.images import IMAGES_PUSHED_ENV

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
    assert set(policies) == {"cdao-dev-connector", "cdao-dev-tasks", "cdao-dev-emr-serverless"}
    for document in policies.values():
        (statement,) = [s for s in document["Statement"] if s["Sid"] == "CopyByPromotedStacks"]
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


def test_a_stack_nothing_is_promoted_from_lets_no_other_account_pull(plan_of):
    run = plan_of("prod")
    assert run.config.storage.image_pull_role_arns == []
    policies = _policies(run)
    # Only EMR Serverless's own pull of the application image (below) remains.
    assert set(policies) == {"cdao-prod-emr-serverless"}
    (statement,) = policies["cdao-prod-emr-serverless"]["Statement"]
    assert statement["Principal"] == {"Service": "emr-serverless.amazonaws.com"}


@pytest.mark.parametrize("stack", ["dev", "prod"])
def test_emr_serverless_may_pull_the_image_only_for_this_account_s_applications(plan_of, stack):
    run = plan_of(stack)
    (statement,) = [
        s for s in _policies(run)[f"cdao-{stack}-emr-serverless"]["Statement"] if s["Sid"] != "CopyByPromotedStacks"
    ]
    assert statement["Effect"] == "Allow"
    assert statement["Principal"] == {"Service": "emr-serverless.amazonaws.com"}
    assert sorted(statement["Action"]) == sorted(EMR_SERVERLESS_PULL_ACTIONS)
    assert set(EMR_SERVERLESS_PULL_ACTIONS) == {"ecr:BatchGetImage", "ecr:DescribeImages", "ecr:GetDownloadUrlForLayer"}
    pattern = f"arn:aws:emr-serverless:{run.config.region}:{ACCOUNT_ID}:/applications/*"
    assert statement["Condition"] == {
        "StringEquals": {"aws:SourceAccount": ACCOUNT_ID},
        "StringLike": {"aws:SourceArn": pattern},
    }
    # The stack's application is one of those the pattern admits; another account's or region's is not.
    (app,) = [r for r in run.registrations if r.type == "aws:emrserverless/application:Application"]
    assert fnmatchcase(app.outputs["arn"], pattern)
    assert not fnmatchcase(app.outputs["arn"].replace(ACCOUNT_ID, "444455556666"), pattern)
    # Nothing beyond reading images: no push, no policy or repository change.
    assert not [a for a in statement["Action"] if not a.startswith(("ecr:BatchGet", "ecr:Describe", "ecr:GetDownload"))]


def test_the_spark_application_runs_the_stack_s_own_image_at_its_revision_commit(plan_of):
    run = plan_of("prod")
    (app,) = [r for r in run.registrations if r.type == "aws:emrserverless/application:Application"]
    (repo,) = [r for r in run.registrations if r.type == REPOSITORY and r.inputs["name"] == "cdao-prod-emr-serverless"]
    image = app.inputs["imageConfiguration"]["imageUri"]
    assert image == f"{repo.outputs['repositoryUrl']}:{run.config.gitops.revision}"
    # EMR Serverless checks the image when it creates or updates the application, so the repository
    # policy that lets it pull must exist first.
    (policy,) = [r for r in run.registrations if r.type == POLICY and r.parent_urn == repo.urn]
    assert policy.urn in app.dependencies


@pytest.mark.parametrize("arn", ["arn:aws:iam::111122223333:user/someone", "cdao-github-ecr-push-staging", "*"])
def test_a_pull_principal_that_is_not_a_role_arn_is_refused_with_its_key(arn):
    raw, _ = read_stack_file("dev")
    raw["cdao:storage"] = {**raw["cdao:storage"], "imagePullRoleArns": [arn]}
    registrations, error = run_program_with_config("dev", "us-east-1", raw)
    assert error is not None
    assert "cdao:storage.imagePullRoleArns" in str(error)
    assert registrations == []


def test_the_first_up_creates_the_application_on_aws_s_image_until_the_stack_s_image_is_pushed(monkeypatch):
    """The stack's first `pulumi up` creates its registry, so its images cannot be there yet and
    EMR Serverless would refuse an application naming one: first-deploy.sh says so with
    CDAO_IMAGES_PUSHED=false, and the deploy it dispatches pushes the images and sets the image."""
    monkeypatch.setenv(IMAGES_PUSHED_ENV, "false")
    run = run_stack("prod")
    (app,) = [r for r in run.registrations if r.type == "aws:emrserverless/application:Application"]
    assert "imageConfiguration" not in app.inputs
    assert {r.inputs["name"] for r in run.registrations if r.type == REPOSITORY} == {
        "cdao-prod-tasks",
        "cdao-prod-connector",
        "cdao-prod-emr-serverless",
    }


@pytest.mark.parametrize("value", ["no", "0", "False"])
def test_an_images_pushed_value_other_than_true_or_false_is_refused(monkeypatch, value):
    monkeypatch.setenv(IMAGES_PUSHED_ENV, value)
    raw, _ = read_stack_file("prod")
    registrations, error = run_program_with_config("prod", "us-east-1", raw)
    assert error is not None
    assert f"{IMAGES_PUSHED_ENV}={value!r}" in str(error) and "'true' or 'false'" in str(error)
    assert registrations == []
