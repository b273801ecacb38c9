"""Checks answered by Flyte itself: its public endpoint, and the connector service propeller calls.

- flyteadmin serves `GET /healthcheck` (200) on HTTP and registers the standard gRPC health service
  with the service name "flyteadmin" (flyteorg/flyte flyteadmin/pkg/server/service.go,
  `healthServer.SetServingStatus("flyteadmin", SERVING)` and `mux.HandleFunc("/healthcheck", ...)`).
  With `configmap.adminServer.server.security.useAuth` on, flyteadmin chains its authentication
  interceptor in front of every unary call on that server, the health service included, and answers
  UNAUTHENTICATED without a token (flyteorg/flyte v1.16.8 flyteadmin/pkg/server/service.go
  `grpcauth.UnaryServerInterceptor(auth.GetAuthenticationInterceptor(authCtx))` under
  `cfg.Security.UseAuth`, flyteadmin/auth/handlers.go GetAuthenticationInterceptor): then that answer
  proves the ALB routes gRPC to flyteadmin, and passes. With it off (flyte-core's default,
  charts/flyte-core/values.yaml `useAuth: false`, and this platform's values), flyteadmin answers
  anyone, so UNAUTHENTICATED came from something in front of it, and fails.
- Propeller discovers connectors with `AgentMetadataService.ListAgents` (flyteidl
  service/agent.proto); each agent lists `supported_task_categories` (name, version). The task
  types propeller sends to the connector service are the `connector-service` routes of
  flyte-core's values in platform/, which a platform test keeps equal to what the SDK emits.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.request
from typing import Any

import cdao_stacks
from cdao_cli.doctor.context import DoctorContext, PlatformFiles, flyte_host_port
from cdao_cli.doctor.report import CheckResult, failed, passed, skipped

FLYTE_VALUES = "platform/addons/flyte/flyte-core/values.yaml"
TIMEOUT_S = 10


def flyte_endpoint(ctx: DoctorContext) -> list[CheckResult]:
    host, port = flyte_host_port(ctx.output("flyteEndpoint"))  # read_outputs has checked it
    return [_http(ctx, host, port), _grpc(ctx, host, port)]


def _http(ctx: DoctorContext, host: str, port: int) -> CheckResult:
    context = ssl.create_default_context(cafile=str(ctx.flyte_ca_file) if ctx.flyte_ca_file else None)
    url = f"https://{host}:{port}/healthcheck"
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S, context=context) as resp:
            code = resp.status
    except urllib.error.HTTPError as exc:
        code = exc.code
    except (urllib.error.URLError, OSError) as exc:
        reason = getattr(exc, "reason", exc)
        return failed(
            "flyte",
            "http",
            f"{url}: {reason}",
            "check DNS for the hostname, the ALB of Flyte's Ingress and its certificate",
        )
    if code != 200:
        return failed(
            "flyte", "http", f"{url} answered HTTP {code}", "check the ALB target group of flyteadmin's HTTP port"
        )
    return passed("flyte", "http", f"{url} answered 200")


#: flyte-core v1.16.8 charts/flyte-core/values.yaml `configmap.adminServer.server.security.useAuth`.
CHART_USE_AUTH_DEFAULT = False


def flyteadmin_uses_auth(files: PlatformFiles | None = None) -> bool:
    """Whether the platform's flyte-core values (FLYTE_VALUES of `files`: platform/ at the stack's
    revision; the working tree when None) turn flyteadmin's authentication on."""
    values = cdao_stacks.load_yaml((files or PlatformFiles()).read(FLYTE_VALUES)) or {}
    node: Any = values
    for key in ("configmap", "adminServer", "server", "security", "useAuth"):
        node = node.get(key) if isinstance(node, dict) else None
    return CHART_USE_AUTH_DEFAULT if node is None else bool(node)


def _grpc(ctx: DoctorContext, host: str, port: int) -> CheckResult:
    import grpc  # noqa: PLC0415
    from grpc_health.v1 import health_pb2, health_pb2_grpc  # noqa: PLC0415

    roots = ctx.flyte_ca_file.read_bytes() if ctx.flyte_ca_file else None
    target = f"{host}:{port}"
    with grpc.secure_channel(target, grpc.ssl_channel_credentials(root_certificates=roots)) as channel:
        stub = health_pb2_grpc.HealthStub(channel)
        try:
            answer = stub.Check(health_pb2.HealthCheckRequest(service="flyteadmin"), timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED and flyteadmin_uses_auth(ctx.platform):
                return passed(
                    "flyte", "grpc", f"{target}: flyteadmin answered UNAUTHENTICATED (useAuth is on): gRPC is routed"
                )
            if exc.code() == grpc.StatusCode.UNAUTHENTICATED:
                return failed(
                    "flyte",
                    "grpc",
                    f"{target}: UNAUTHENTICATED: {exc.details()}",
                    "flyteadmin's health needs no credentials here: look at the ALB's listener rules and auth actions",
                )
            return failed(
                "flyte",
                "grpc",
                f"{target}: {exc.code().name}: {exc.details()}",
                "check the GRPC target group and its health check (separateGrpcIngress in flyte-core's values)",
            )
    status = health_pb2.HealthCheckResponse.ServingStatus.Name(answer.status)
    if answer.status != health_pb2.HealthCheckResponse.SERVING:
        return failed("flyte", "grpc", f"{target}: flyteadmin is {status}", "read flyteadmin's logs")
    return passed("flyte", "grpc", f"{target}: flyteadmin SERVING")


def routed_task_types(files: PlatformFiles | None = None) -> set[str]:
    """The task types flyte-core's values (FLYTE_VALUES of `files`: platform/ at the stack's revision;
    the working tree when None) route to the connector-service plugin."""

    def walk(node: Any) -> set[str]:
        found: set[str] = set()
        if isinstance(node, dict):
            for key, value in node.items():
                if key == "default-for-task-types" and isinstance(value, dict):
                    found |= {t for t, plugin in value.items() if plugin == "connector-service"}
                else:
                    found |= walk(value)
        elif isinstance(node, list):
            for item in node:
                found |= walk(item)
        return found

    return walk(cdao_stacks.load_yaml((files or PlatformFiles()).read(FLYTE_VALUES)))


def connectors(ctx: DoctorContext) -> list[CheckResult]:
    if not ctx.connector_endpoint:
        return [
            skipped(
                "connectors",
                "ListAgents",
                "no --connector-endpoint given",
                "kubectl -n flyte port-forward svc/cdao-connector 8000:8000, then --connector-endpoint 127.0.0.1:8000",
            )
        ]
    import grpc  # noqa: PLC0415
    from flyteidl.admin.agent_pb2 import ListAgentsRequest  # noqa: PLC0415
    from flyteidl.service.agent_pb2_grpc import AgentMetadataServiceStub  # noqa: PLC0415

    with grpc.insecure_channel(ctx.connector_endpoint) as channel:
        try:
            answer = AgentMetadataServiceStub(channel).ListAgents(ListAgentsRequest(), timeout=TIMEOUT_S)
        except grpc.RpcError as exc:
            return [
                failed(
                    "connectors",
                    "ListAgents",
                    f"{ctx.connector_endpoint}: {exc.code().name}: {exc.details()}",
                    "check the cdao-connector Deployment's pods and logs in namespace flyte",
                )
            ]
    served = {c.name for agent in answer.agents for c in agent.supported_task_categories}
    served |= {t for agent in answer.agents for t in agent.supported_task_types}
    routed = routed_task_types(ctx.platform)
    missing = sorted(routed - served)
    if missing:
        return [
            failed(
                "connectors",
                "ListAgents",
                f"propeller routes {', '.join(missing)} to the connector service, which does not serve them",
                "deploy the connector image built from the platform's revision (its --modules must register them)",
            )
        ]
    return [passed("connectors", "ListAgents", f"serves all {len(routed)} routed task types")]
