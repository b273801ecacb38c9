"""`cdao flyte-projects --stack <s>`: the Flyte projects of a stack, one a line, as infra/ creates them
(cdao:flyte.projects).

The registration step (.github/scripts/register-workflows.sh) registers workflows/ into exactly
these projects, so CI and the namespaces and IAM roles infra/ made for each project-domain can never
disagree.

With `--domain <d> --set-raw-data-prefix <userdata bucket>` it first sets, in flyteadmin, each
project-domain's raw output location to `s3://<bucket>/data/<project>/<d>` (infra.contract.raw_data_prefix),
the only part of the bucket that project-domain's task role may write. It is a matchable attribute
WORKFLOW_EXECUTION_CONFIG, which flyteadmin merges into every execution it creates, `pyflyte run
--remote` and schedules alike; an execution's own `raw_output_data_config` (`--raw-output-data-prefix`)
and a launch plan's win over it (first set wins: flyteorg/flyte v1.16.8
flyteadmin/pkg/manager/impl/execution_manager.go `getExecutionConfig`, util/shared.go
`MergeIntoExecConfig`), and propeller's `rawoutput-prefix` applies only when none is set. Neither
`pyflyte run --remote` nor `pyflyte register`'s launch plans set one unless asked with
`--raw-output-data-prefix` / `--raw-data-prefix` (flytekit 1.16.31 clis/sdk_in_container/run.py
`options_from_run_params`, core/options.py `Options.default_from`, tools/translator.py: an empty
prefix, which flyteadmin skips). flyteadmin
replaces the whole attribute on update (resources/resource_manager.go `UpdateProjectDomainAttributes`,
CreateOrUpdate), so the other fields of an existing one are read first and kept.
"""

from __future__ import annotations

import argparse
import re
import sys

from cdao_cli import EXIT_FAILED, EXIT_OK, EXIT_USAGE, add_environments_argument

DESCRIPTION = (
    "Print the Flyte projects of a stack (cdao:flyte.projects), one a line; with --set-raw-data-prefix, "
    "first set each project-domain's raw output location in flyteadmin."
)


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name (environments/Pulumi.<stack>.yaml)")
    add_environments_argument(parser)
    parser.add_argument("--domain", help="Flyte domain whose raw output location --set-raw-data-prefix sets")
    parser.add_argument(
        "--set-raw-data-prefix",
        metavar="BUCKET",
        help="the stack's userdata bucket name: set s3://BUCKET/data/<project>/<domain> as each project-domain's "
        "raw output location in the flyteadmin of FLYTE_PLATFORM_URL (flytekit's configuration)",
    )


def run(args: argparse.Namespace) -> int:
    """EXIT_OK with the projects on stdout; EXIT_USAGE (message on stderr) for a bad stack or file."""
    import cdao_stacks  # noqa: PLC0415
    from cdao_cli.plan.runner import StackFileError, read_stack_file  # noqa: PLC0415
    from infra.config import ConfigError, parse_stack_config  # noqa: PLC0415

    try:
        # The registry first, as every other subcommand: a missing folder or a broken or unknown
        # stack is a StackRegistryError (StackNotFoundError is one), never a traceback.
        cdao_stacks.load(args.environments).get(args.stack)
        raw, _ = read_stack_file(args.stack, args.environments)
        config, _ = parse_stack_config(args.stack, raw)
    except (cdao_stacks.StackRegistryError, StackFileError, ConfigError) as exc:
        print(f"cdao flyte-projects: {exc}", file=sys.stderr)
        return EXIT_USAGE
    if args.set_raw_data_prefix is not None:
        problem = _raw_data_usage_error(args.domain, args.set_raw_data_prefix)
        if problem:
            print(f"cdao flyte-projects: {problem}", file=sys.stderr)
            return EXIT_USAGE
        try:
            for project in config.flyte.projects:
                set_raw_data_prefix(project, args.domain, args.set_raw_data_prefix)
        except RawDataPrefixError as exc:
            print(f"cdao flyte-projects: {exc}", file=sys.stderr)
            return EXIT_FAILED
    print("\n".join(config.flyte.projects))
    return EXIT_OK


class RawDataPrefixError(Exception):
    """flyteadmin refused or could not be reached; the message names the project-domain."""


# S3's bucket naming rules (https://docs.aws.amazon.com/AmazonS3/latest/userguide/bucketnamingrules.html):
# a name, never a URI or a key prefix.
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")


def _raw_data_usage_error(domain: str | None, bucket: str) -> str | None:
    from infra.contract import FLYTE_DOMAINS  # noqa: PLC0415

    if domain not in FLYTE_DOMAINS:
        return f"--set-raw-data-prefix needs --domain, one of {', '.join(FLYTE_DOMAINS)} (got {domain!r})"
    if not _BUCKET.fullmatch(bucket):
        return f"--set-raw-data-prefix {bucket!r}: expected an S3 bucket name (the stack's userdata bucket)"
    return None


def set_raw_data_prefix(project: str, domain: str, bucket: str, platform=None) -> str:
    """Set `s3://<bucket>/data/<project>/<domain>` as the project-domain's raw output location in
    flyteadmin and return it. `platform` is a flytekit PlatformConfig (default: PlatformConfig.auto(),
    which reads FLYTE_PLATFORM_URL and FLYTE_CREDENTIALS_* as pyflyte does). Raises RawDataPrefixError
    when flyteadmin refuses (e.g. an unknown project) or cannot be reached."""
    import grpc  # noqa: PLC0415
    from flyteidl.admin import common_pb2, matchable_resource_pb2, project_domain_attributes_pb2  # noqa: PLC0415
    from flytekit.clients.raw import RawSynchronousFlyteClient  # noqa: PLC0415
    from flytekit.configuration import PlatformConfig  # noqa: PLC0415
    from flytekit.exceptions.base import FlyteException  # noqa: PLC0415
    from flytekit.exceptions.user import FlyteEntityNotExistException  # noqa: PLC0415

    from infra.contract import raw_data_prefix  # noqa: PLC0415

    prefix = f"s3://{bucket}/{raw_data_prefix(project, domain)}"
    kind = matchable_resource_pb2.MatchableResource.WORKFLOW_EXECUTION_CONFIG
    # flytekit's friendly client models no WorkflowExecutionConfig attribute: the raw client takes
    # flyteidl's messages as they are.
    try:
        client = RawSynchronousFlyteClient(platform or PlatformConfig.auto())
        try:
            current = client.get_project_domain_attributes(
                project_domain_attributes_pb2.ProjectDomainAttributesGetRequest(
                    project=project, domain=domain, resource_type=kind
                )
            ).attributes.matching_attributes.workflow_execution_config
        except FlyteEntityNotExistException:  # none set yet: flyteadmin answers NotFound
            current = matchable_resource_pb2.WorkflowExecutionConfig()
        config = matchable_resource_pb2.WorkflowExecutionConfig()
        config.CopyFrom(current)
        config.raw_output_data_config.CopyFrom(common_pb2.RawOutputDataConfig(output_location_prefix=prefix))
        client.update_project_domain_attributes(
            project_domain_attributes_pb2.ProjectDomainAttributesUpdateRequest(
                attributes=project_domain_attributes_pb2.ProjectDomainAttributes(
                    project=project,
                    domain=domain,
                    matching_attributes=matchable_resource_pb2.MatchingAttributes(workflow_execution_config=config),
                )
            )
        )
    except (FlyteException, grpc.RpcError) as exc:
        # flytekit's interceptor turns a gRPC status into an exception with no message of its own
        # (flytekit/clients/grpc_utils/wrap_exception_interceptor.py): the status is its cause.
        status = exc.__cause__ if isinstance(exc.__cause__, grpc.RpcError) else exc
        detail = f"{status.code().name}: {status.details()}" if isinstance(status, grpc.Call) else str(exc)
        raise RawDataPrefixError(
            f"flyteadmin refused the raw output location {prefix} for {project}/{domain}: {type(exc).__name__} {detail}"
        ) from exc
    return prefix
