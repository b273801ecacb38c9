"""`cdao doctor --stack <name>`: does the deployed platform really work? Check by check.

Run after `pulumi up` with the stack's AWS credentials:

    pulumi stack output --json --stack dev > dev-outputs.json
    cdao doctor --stack dev --outputs dev-outputs.json --kubeconfig ~/.kube/config \
        [--connector-endpoint 127.0.0.1:8000] [--format text|json|markdown]

Exit codes follow `cdao plan`: 0 nothing failed (skips included), 1 a check failed, 2 bad input
(the message names the option or file). docs/doctor.md lists every check, what it calls, and which
were exercised against emulators here and which only against a real account.
"""

from __future__ import annotations

import argparse
import ssl
from collections.abc import Callable
from pathlib import Path

from cdao_authority import AuthorityError, parse_authority

from cdao_cli import add_environments_argument
from cdao_cli.doctor import aws, flyte, kube
from cdao_cli.doctor.context import DoctorContext, DoctorInputError, platform_files, read_outputs
from cdao_cli.doctor.report import CheckResult, errored, exit_code, render_json, render_markdown, render_text

RENDERERS: dict[str, Callable[[str, list[CheckResult]], str]] = {
    "text": render_text,
    "json": render_json,
    "markdown": render_markdown,
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--stack", required=True, help="stack name (environments/Pulumi.<stack>.yaml)")
    add_environments_argument(parser)
    parser.add_argument(
        "--outputs",
        type=Path,
        required=True,
        help="the stack's outputs as `pulumi stack output --json --stack <stack>` prints them",
    )
    parser.add_argument("--kubeconfig", help="kubeconfig of the cluster (without it, Kubernetes checks skip)")
    parser.add_argument("--context", help="kubeconfig context (default: the current one)")
    parser.add_argument(
        "--connector-endpoint",
        type=host_port,
        help="host:port of the connector service, e.g. a port-forward ([::1]:8000 for an IPv6 address)",
    )
    parser.add_argument("--flyte-ca-file", type=Path, help="CA bundle for Flyte's endpoint if it is not public")
    parser.add_argument("--format", choices=tuple(RENDERERS), default="text")


def host_port(value: str) -> str:
    """`value` unchanged if it is a gRPC `host:port` target with an explicit port (the grammar of
    `cdao_authority`, which `cdao_sdk.configure` reads its admin endpoint with: an RFC 1123 name, an
    IPv4 address or a bracketed IPv6 address, then ASCII digits 1-65535; grpc/grpc doc/naming.md);
    argparse.ArgumentTypeError otherwise, which argparse reports after the option's name
    ("argument --connector-endpoint: ...") and exits 2."""
    try:
        parse_authority(value, port_required=True)
    except AuthorityError as error:
        raise argparse.ArgumentTypeError(
            f"{value!r}: {error}; expected host:port (a DNS name, an IPv4 address or a bracketed IPv6 address, "
            "then a port 1-65535)"
        ) from None
    return value


def build_context(args: argparse.Namespace) -> DoctorContext:
    """Read the outputs (with the `declared` record the checks judge by) and open the clients.
    Raises DoctorInputError. The stack file is not read (the caller looks the stack up in the
    registry): its defaults are this checkout's, not necessarily what the deployment ran."""
    import boto3  # noqa: PLC0415

    outputs = read_outputs(args.outputs, args.stack)
    platform = platform_files(args.stack, outputs["declared"]["repoRevision"])
    if args.flyte_ca_file is not None:
        try:
            ssl.create_default_context(cafile=str(args.flyte_ca_file))
        except (OSError, ssl.SSLError) as exc:
            raise DoctorInputError(
                f"--flyte-ca-file {args.flyte_ca_file}: not a readable PEM CA bundle ({exc})"
            ) from None
    ctx = DoctorContext(
        stack=args.stack,
        outputs=outputs,
        session=boto3.session.Session(region_name=outputs["region"]),
        connector_endpoint=args.connector_endpoint,
        flyte_ca_file=args.flyte_ca_file,
        platform=platform,
    )
    if args.kubeconfig:
        if not Path(args.kubeconfig).is_file():
            raise DoctorInputError(f"--kubeconfig {args.kubeconfig}: no such file")
        try:
            ctx.kube = kube.load_client(args.kubeconfig, args.context)
        except Exception as exc:  # kubernetes raises ConfigException, YAML and type errors alike
            raise DoctorInputError(
                f"--kubeconfig {args.kubeconfig}: not a usable kubeconfig ({type(exc).__name__}: {exc})"
            ) from None
    return ctx


def run_checks(ctx: DoctorContext) -> list[CheckResult]:
    """Every check, in the order a platform comes up: identity, nodes, GitOps, Flyte, data safety.

    A family that raises (a bug, or an answer no source led us to expect) becomes one `error` result
    naming the family and the exception; the other families still run, and exit_code makes it 2."""
    families: list[tuple[str, Callable[[], list[CheckResult]]]] = [
        ("access", lambda: aws.access_entries(ctx)),
        ("irsa", lambda: aws.irsa(ctx, kube.ServiceAccountLookup(ctx))),
        ("node-groups", lambda: aws.node_groups(ctx)),
        ("gpu", lambda: kube.gpu_nodes(ctx)),
        ("argocd", lambda: kube.argocd_applications(ctx)),
        ("certificate", lambda: aws.certificate(ctx)),
        ("flyte", lambda: flyte.flyte_endpoint(ctx)),
        ("connectors", lambda: flyte.connectors(ctx)),
        ("logs", lambda: aws.log_groups(ctx)),
        ("backup", lambda: aws.backups(ctx)),
    ]
    results: list[CheckResult] = []
    for family, check in families:
        try:
            results += check()
        except Exception as exc:  # reported as the family's result, never a traceback
            results.append(errored(family, f"the check crashed: {type(exc).__name__}: {exc}"))
    return results


def render(args: argparse.Namespace, results: list[CheckResult]) -> tuple[str, int]:
    """The report in the requested format, and the exit code the results call for."""
    return RENDERERS[args.format](args.stack, results), exit_code(results)


__all__ = ["DoctorInputError", "add_arguments", "build_context", "render", "run_checks"]
