"""`cdao flyte-projects --set-raw-data-prefix`: the request flyteadmin gets, through flytekit's real
gRPC client, against a local AdminService answering as flyteadmin does (support/flyteadmin.py)."""

from __future__ import annotations

import pytest
from flyteidl.admin import matchable_resource_pb2, project_domain_attributes_pb2

from cdao_cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, flyte_projects
from cdao_cli.main import main
from tests.cdao_cli.support.flyteadmin import KIND, serve


@pytest.fixture
def admin():
    with serve({"ml-experiments"}) as running:
        yield running


def test_sets_the_project_domain_raw_output_location(admin):
    servicer, platform = admin
    prefix = flyte_projects.set_raw_data_prefix("ml-experiments", "staging", "cdao-staging-userdata-0123", platform)
    assert prefix == "s3://cdao-staging-userdata-0123/data/ml-experiments/staging"
    (update,) = servicer.updates
    assert (update.attributes.project, update.attributes.domain) == ("ml-experiments", "staging")
    config = update.attributes.matching_attributes.workflow_execution_config
    assert config.raw_output_data_config.output_location_prefix == prefix


def test_keeps_the_other_fields_of_an_existing_attribute(admin):
    """flyteadmin replaces the whole attribute: a max parallelism set by hand must survive."""
    servicer, platform = admin
    existing = matchable_resource_pb2.WorkflowExecutionConfig(max_parallelism=7)
    servicer.stored[("ml-experiments", "production", KIND)] = project_domain_attributes_pb2.ProjectDomainAttributes(
        project="ml-experiments",
        domain="production",
        matching_attributes=matchable_resource_pb2.MatchingAttributes(workflow_execution_config=existing),
    )
    flyte_projects.set_raw_data_prefix("ml-experiments", "production", "b-prod-userdata", platform)
    config = servicer.updates[-1].attributes.matching_attributes.workflow_execution_config
    assert config.max_parallelism == 7
    assert config.raw_output_data_config.output_location_prefix == "s3://b-prod-userdata/data/ml-experiments/production"


def test_a_refused_update_names_the_project_domain(admin):
    _, platform = admin
    with pytest.raises(flyte_projects.RawDataPrefixError, match=r"fraud-models/development.*INVALID_ARGUMENT"):
        flyte_projects.set_raw_data_prefix("fraud-models", "development", "b-dev-userdata", platform)


def test_the_cli_sets_every_project_then_prints_them(admin, monkeypatch, capsys):
    servicer, platform = admin
    monkeypatch.setenv("FLYTE_PLATFORM_URL", platform.endpoint)
    monkeypatch.setenv("FLYTE_PLATFORM_INSECURE", "True")
    argv = ["flyte-projects", "--stack", "dev", "--domain", "development", "--set-raw-data-prefix", "b-dev-userdata"]
    assert main(argv) == EXIT_OK
    assert capsys.readouterr().out.split() == ["ml-experiments"]
    (update,) = servicer.updates
    prefix = update.attributes.matching_attributes.workflow_execution_config.raw_output_data_config
    assert prefix.output_location_prefix == "s3://b-dev-userdata/data/ml-experiments/development"

    servicer.projects.clear()  # flyteadmin without the project: exit 1, the reason on stderr
    assert main(argv) == EXIT_FAILED
    assert "ml-experiments/development" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--set-raw-data-prefix", "b-dev-userdata"], "needs --domain"),
        (["--domain", "qa", "--set-raw-data-prefix", "b-dev-userdata"], "needs --domain"),
        (["--domain", "development", "--set-raw-data-prefix", "s3://b-dev-userdata/x"], "expected an S3 bucket name"),
    ],
)
def test_bad_raw_data_arguments_exit_2(capsys, extra: list[str], message: str):
    assert main(["flyte-projects", "--stack", "dev", *extra]) == EXIT_USAGE
    out, err = capsys.readouterr()
    assert out == ""
    assert message in err
