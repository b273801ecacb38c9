"""configure / run / monitor: the notebook's view of the Flyte control plane, via flytekit's FlyteRemote."""

from __future__ import annotations

import functools
import math
import re
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from cdao_authority import AuthorityError, parse_authority
from flyteidl.core.execution_pb2 import NodeExecution, TaskExecution, WorkflowExecution
from flytekit.models.core.identifier import WorkflowExecutionIdentifier

from cdao_sdk import settings
from cdao_sdk._keywords import checked

# Task types whose jobs run in SageMaker: the plugin's and ours.
SAGEMAKER_TASK_TYPE_PREFIXES = ("sagemaker", "cdao-sagemaker")

_remote: Any = None
# How long run/monitor wait for the admin's gRPC channel to come up before naming the endpoint in an
# error. flytekit's own client waits for gRPC's connect timeout (20 s), then raises an exception that
# does not name the endpoint (flytekit/clients/grpc_utils/wrap_exception_interceptor.py, 1.16.31).
DEFAULT_CONNECT_TIMEOUT_SECONDS = 10.0
_connect_timeout = DEFAULT_CONNECT_TIMEOUT_SECONDS
# Each admin RPC's deadline. flytekit gives one only to sync_execution's calls (rpc_timeout,
# DEFAULT_SYNC_EXECUTION_RPC_TIMEOUT = 60 s, flytekit/remote/remote.py 1.16.31); fetch_execution and
# execute have none, so an admin that takes a call and never answers blocks them forever.
DEFAULT_RPC_TIMEOUT_SECONDS = 60.0
_rpc_timeout = DEFAULT_RPC_TIMEOUT_SECONDS


@checked("configure")
def configure(
    admin_endpoint: str,
    project: str,
    domain: str = "development",
    *,
    insecure: bool | None = None,
    region: str | None = None,
    sagemaker_role: str | None = None,
    emr_serverless_role: str | None = None,
    emr_serverless_application_id: str | None = None,
    default_bucket: str | None = None,
    default_image: str | None = None,
    mlflow_tracking_uri: str | None = None,
    connect_timeout_seconds: float = DEFAULT_CONNECT_TIMEOUT_SECONDS,
    rpc_timeout_seconds: float = DEFAULT_RPC_TIMEOUT_SECONDS,
    remote: Any = None,
) -> Any:
    """Point the SDK at a Flyte deployment and record this platform's defaults.

    ``admin_endpoint`` is ``host[:port]``, ``https://host[:port]`` (TLS) or ``http://host[:port]``
    (plaintext gRPC, e.g. a sandbox's ``http://localhost:30080``); the scheme sets ``insecure``,
    and an ``insecure=`` that contradicts it is a ``ValueError``. Without a scheme, ``insecure``
    defaults to False (TLS), as flytekit's ``PlatformConfig`` does. ``host`` is a DNS name (RFC 1123
    labels), an IPv4 address or a bracketed IPv6 address; ``port`` is ASCII digits, 1-65535
    (``cdao_authority``, the grammar ``cdao doctor --connector-endpoint`` reads too). Another
    host, whitespace, user information (``user@``), a path, query or fragment, or another scheme is a
    ``ValueError`` naming the argument; ``mlflow_tracking_uri``'s host and port follow the same grammar.
    ``connect_timeout_seconds``: how long ``run``/``monitor`` wait for the admin's channel to come up
    before a ``ConnectionError`` naming the endpoint. ``rpc_timeout_seconds``: the deadline of each
    admin call they make (execute, fetch, sync, including ``run(wait=True)``'s polls); past it, a
    ``TimeoutError`` naming the endpoint and the call. Both are finite numbers of seconds > 0.
    ``remote`` accepts a ready ``FlyteRemote`` (e.g. one built from a config file with SSO).
    The deadline also holds for the registering ``run`` does (flytekit does it on its own threads),
    unless ``remote`` is given: a remote built elsewhere has it only on the calling thread.
    ``mlflow_tracking_uri`` (http(s)://host[:port][/prefix]) reaches every task ``run`` launches as
    ``MLFLOW_TRACKING_URI``.
    """
    global _remote, _connect_timeout, _rpc_timeout  # noqa: PLW0603  (one control-plane connection per session)
    target, scheme_insecure = _grpc_target(admin_endpoint)
    if scheme_insecure is not None and insecure is not None and insecure != scheme_insecure:
        raise ValueError(
            f"configure admin_endpoint={admin_endpoint!r} with insecure={insecure}: the scheme says "
            f"insecure={scheme_insecure}; drop one of them"
        )
    insecure = scheme_insecure if scheme_insecure is not None else bool(insecure)
    for name, seconds in (
        ("connect_timeout_seconds", connect_timeout_seconds),
        ("rpc_timeout_seconds", rpc_timeout_seconds),
    ):
        if (
            isinstance(seconds, bool)
            or not isinstance(seconds, int | float)
            or not math.isfinite(seconds)
            or seconds <= 0
        ):
            raise ValueError(f"configure {name}={seconds!r}: expected a finite number of seconds > 0")
    if not project or not domain:
        raise ValueError("configure needs a non-empty project and domain")
    if mlflow_tracking_uri is not None:
        uri = re.fullmatch(r"https?://([^\s/]*)(/\S*)?", mlflow_tracking_uri)
        problem = "" if uri is None else _authority_problem(uri.group(1))
        if problem is not None:
            raise ValueError(
                f"configure mlflow_tracking_uri={mlflow_tracking_uri!r}: {problem + '; ' if problem else ''}"
                "expected http(s)://host[:port][/prefix]"
            )
    settings.update(
        admin_endpoint=admin_endpoint,
        project=project,
        domain=domain,
        insecure=insecure,
        region=region,
        sagemaker_role=sagemaker_role,
        emr_serverless_role=emr_serverless_role,
        emr_serverless_application_id=emr_serverless_application_id,
        default_bucket=default_bucket,
        default_image=default_image,
        mlflow_tracking_uri=mlflow_tracking_uri,
    )
    if remote is None:
        remote = _flyte_remote(target, insecure, project, domain)
    _remote = remote
    _connect_timeout = float(connect_timeout_seconds)
    _rpc_timeout = float(rpc_timeout_seconds)
    return remote


_ENDPOINT_FORMS = "expected host[:port], https://host[:port] or http://host[:port] (port 1-65535)"


def _grpc_target(admin_endpoint: str) -> tuple[str, bool | None]:
    """``admin_endpoint`` -> (gRPC target ``host[:port]``, insecure as the scheme says or None).

    The scheme is matched case-insensitively (RFC 3986 section 3.1). ``host[:port]`` has the grammar of
    ``cdao_authority`` (RFC 1123 section 2.1 names, IPv4, bracketed IPv6 of RFC 3986 section 3.2.2;
    ASCII-digit ports 1-65535, section 3.2.3). ``dns:///`` is gRPC's own name-resolver prefix
    (https://github.com/grpc/grpc/blob/master/doc/naming.md)."""

    def refuse(reason: str) -> ValueError:
        return ValueError(f"configure admin_endpoint={admin_endpoint!r}: {reason}")

    if re.search(r"\s", admin_endpoint):
        raise refuse(f"contains whitespace; {_ENDPOINT_FORMS}")
    scheme, separator, rest = admin_endpoint.partition("://")
    if not separator:
        scheme, rest = "", admin_endpoint
    elif admin_endpoint.startswith("dns:///"):
        scheme, rest = "", admin_endpoint.removeprefix("dns:///")
    elif scheme.lower() not in ("http", "https"):
        raise refuse(_ENDPOINT_FORMS)
    scheme_insecure = {"http": True, "https": False}.get(scheme.lower())
    authority = rest.removesuffix("/")
    problem = _authority_problem(authority)
    if problem is not None:
        raise refuse(f"{problem}; {_ENDPOINT_FORMS}")
    return authority, scheme_insecure


def _authority_problem(authority: str) -> str | None:
    """What is wrong with ``authority`` as ``host[:port]`` (``cdao_authority``'s reason), or None."""
    try:
        parse_authority(authority)
    except AuthorityError as error:
        return str(error)
    return None


@contextmanager
def _admin_call(asked: str) -> Iterator[None]:
    """Run one SDK operation against the admin with a deadline on each of its gRPC calls, and name
    the admin and ``asked`` in its errors.

    The deadline is flytekit's own ``scoped_grpc_deadline`` (flytekit/clients/grpc_utils/
    deadline_interceptor.py, 1.16.31), which every channel flytekit builds applies to each unary
    call (auth_helper.py ``wrap_exceptions_channel``); a call past it is flytekit's ``FlyteTimeout``
    (wrap_exception_interceptor.py), re-raised as ``TimeoutError``. flytekit's other admin errors
    name neither the endpoint nor the gRPC status ("SYSTEM:Unknown: error=None"); the gRPC error is
    their ``__cause__``: re-raised saying which admin answered what."""
    from flytekit.clients.grpc_utils.deadline_interceptor import scoped_grpc_deadline  # noqa: PLC0415
    from flytekit.exceptions.base import FlyteException  # noqa: PLC0415
    from flytekit.exceptions.system import FlyteSystemUnavailableException  # noqa: PLC0415
    from flytekit.exceptions.user import FlyteTimeout  # noqa: PLC0415

    project, domain = settings.get("project"), settings.get("domain")
    where = f"Flyte admin at {settings.get('admin_endpoint')} (project {project}, domain {domain})"
    try:
        with scoped_grpc_deadline(_rpc_timeout):
            yield
    except FlyteTimeout as error:
        raise TimeoutError(
            f"{where} did not answer {asked} within {_rpc_timeout:g} s (configure rpc_timeout_seconds)"
        ) from error
    except FlyteException as error:
        cause = error.__cause__
        code = getattr(cause, "code", None)
        status = f"{code().name}: {cause.details()}" if callable(code) else str(error)  # type: ignore[union-attr]
        kind = ConnectionError if isinstance(error, FlyteSystemUnavailableException) else RuntimeError
        raise kind(f"{where} answered {status} to {asked}") from error


def _flyte_remote(endpoint: str, insecure: bool, project: str, domain: str) -> Any:
    # Imported here: flytekit.remote pulls in the gRPC admin client, which decorating and
    # running tasks locally never need.
    from flytekit.configuration import Config  # noqa: PLC0415

    return _deadline_remote_class()(
        config=Config.for_endpoint(endpoint=endpoint, insecure=insecure), default_project=project, default_domain=domain
    )


@functools.cache
def _deadline_remote_class() -> type:
    """``FlyteRemote`` whose registrations keep the admin call deadline.

    flytekit registers a workflow's tasks on executor threads (flytekit/remote/remote.py
    ``_serialize_and_register``: ``loop.run_in_executor(None, self.raw_register, ...)``, 1.16.31),
    and threads do not inherit a context variable, so the deadline ``_admin_call`` scopes
    (``scoped_grpc_deadline``) does not reach their calls. ``raw_register`` scopes it again on
    whichever thread it runs. Hand-written: flytekit has no per-remote default deadline."""
    from flytekit.clients.grpc_utils.deadline_interceptor import (  # noqa: PLC0415
        get_scoped_grpc_deadline,
        scoped_grpc_deadline,
    )
    from flytekit.remote import FlyteRemote  # noqa: PLC0415

    class DeadlineFlyteRemote(FlyteRemote):  # type: ignore[misc]
        def raw_register(self, *args: Any, **kwargs: Any) -> Any:
            with scoped_grpc_deadline(get_scoped_grpc_deadline() or _rpc_timeout):
                return super().raw_register(*args, **kwargs)

    return DeadlineFlyteRemote


@checked("configure_sagemaker")
def configure_sagemaker(
    *,
    sagemaker_role: str | None = None,
    default_bucket: str | None = None,
    region: str | None = None,
    default_image: str | None = None,
) -> None:
    """Record the SageMaker settings alone (the control plane stays as ``configure`` set it).

    They are read when a SageMaker task is registered: ``sagemaker_role`` (the job's execution role
    ARN), ``default_bucket`` (``s3://<bucket>/sagemaker/...`` outputs and checkpoints), ``region``,
    ``default_image``. Each is checked by ``@checked`` against the one shape of that setting
    (``cdao_sdk._keywords.SHAPES``, as ``configure`` does). See :mod:`cdao_sdk.settings`.
    """
    settings.update(
        sagemaker_role=sagemaker_role, default_bucket=default_bucket, region=region, default_image=default_image
    )


def _require_remote() -> Any:
    if _remote is None:
        raise RuntimeError("call cdao_sdk.configure(admin_endpoint=..., project=..., domain=...) first")
    from flytekit.remote import FlyteRemote  # noqa: PLC0415  (see configure)

    if isinstance(_remote, FlyteRemote):
        _check_reachable(_remote.config.platform)
    return _remote


def _check_reachable(platform: Any) -> None:
    """Wait up to the connect timeout for the admin's gRPC channel, built the way flytekit builds it.

    A channel is READY once its transport (TCP, TLS when not insecure, HTTP/2) is up, so an endpoint
    whose transport never comes up, or a TLS/plaintext mismatch, fails here with the endpoint named
    instead of in the first RPC (flytekit/clients/auth_helper.py ``get_channel``; grpc
    ``channel_ready_future``). An admin that is up but never answers a call is ``_admin_call``'s deadline.
    """
    import grpc  # noqa: PLC0415
    from flytekit.clients.auth_helper import get_channel  # noqa: PLC0415

    channel = get_channel(platform)
    try:
        grpc.channel_ready_future(channel).result(timeout=_connect_timeout)
    except grpc.FutureTimeoutError:
        transport = "plaintext (insecure=True)" if platform.insecure else "TLS (insecure=False)"
        raise ConnectionError(
            f"Flyte admin at {platform.endpoint} did not answer over {transport} within {_connect_timeout:g}s; "
            "check cdao_sdk.configure(admin_endpoint=...) and that the endpoint is reachable"
        ) from None
    finally:
        channel.close()


def run(workflow: Any, inputs: dict[str, Any] | None = None, *, wait: bool = False, **execute_kwargs: Any) -> Any:
    """Register (if needed) and launch ``workflow`` remotely; returns the FlyteWorkflowExecution."""
    remote = _require_remote()
    tracking_uri = settings.get("mlflow_tracking_uri")
    if tracking_uri:
        # Execution-level environment variables reach every task container of the execution.
        execute_kwargs["envs"] = {"MLFLOW_TRACKING_URI": tracking_uri, **(execute_kwargs.get("envs") or {})}
    with _admin_call(f"execute({getattr(workflow, 'name', workflow)!r}, wait={wait})"):
        return remote.execute(
            workflow,
            inputs=inputs or {},
            project=settings.get("project"),
            domain=settings.get("domain"),
            wait=wait,
            **execute_kwargs,
        )


@dataclass(frozen=True)
class NodeStatus:
    node_id: str
    phase: str
    task_type: str | None
    log_links: tuple[tuple[str, str], ...]
    error: str | None


def _execution_asked(execution: Any, call: str) -> Any:
    """``execution`` as ``call`` (a public SDK function) takes it, checked before the admin is contacted:
    what ``run()`` returned (flytekit's ``FlyteWorkflowExecution``, ``FlyteRemote.execute``'s answer,
    flytekit/remote/remote.py 1.16.31), its ``.id`` (a ``WorkflowExecutionIdentifier``,
    flytekit/models/execution.py ``Execution.id``), or an execution name (str) in the configured project
    and domain. Anything else is a TypeError naming ``call`` and the argument; an empty name a ValueError."""
    from flytekit.remote.executions import FlyteWorkflowExecution  # noqa: PLC0415  (see _flyte_remote)

    if isinstance(execution, str):
        if not execution.strip():
            raise ValueError(f"{call} execution={execution!r}: the name is empty; {_EXECUTION_FORMS}")
        return execution
    if isinstance(execution, WorkflowExecutionIdentifier | FlyteWorkflowExecution):
        return execution
    raise TypeError(f"{call} execution={execution!r} ({type(execution).__name__}): {_EXECUTION_FORMS}")


_EXECUTION_FORMS = (
    "expected what cdao_sdk.run() returned (a FlyteWorkflowExecution), its .id (a WorkflowExecutionIdentifier) "
    "or an execution name (str)"
)


def _fetch(execution: Any) -> Any:
    """``execution`` (checked by :func:`_execution_asked`, or a synced execution of an earlier poll)
    synced with its nodes from the admin; a name is fetched first."""
    remote = _require_remote()
    if isinstance(execution, str):
        execution = WorkflowExecutionIdentifier(settings.get("project"), settings.get("domain"), execution)
    if isinstance(execution, WorkflowExecutionIdentifier):
        project, domain, name = execution.project, execution.domain, execution.name
        with _admin_call(f"fetch_execution(project={project!r}, domain={domain!r}, name={name!r})"):
            execution = remote.fetch_execution(project=project, domain=domain, name=name)
    ident = getattr(execution, "id", None)
    named = ", ".join(f"{k}={getattr(ident, k)!r}" for k in ("project", "domain", "name") if hasattr(ident, k))
    with _admin_call(f"sync_execution({named or execution!r}, sync_nodes=True)"):
        return remote.sync_execution(execution, sync_nodes=True)


def _node_statuses(execution: Any) -> list[NodeStatus]:
    out = []
    for node_id, node in sorted((execution.node_executions or {}).items()):
        if node_id in ("start-node", "end-node"):
            continue
        task_type = None
        links: list[tuple[str, str]] = []
        for te in getattr(node, "task_executions", None) or []:
            task = getattr(te, "task", None)
            if task is not None and getattr(task, "template", None) is not None:
                task_type = task.template.type
            links += [(log.name, log.uri) for log in (te.closure.logs or [])]
        err = node.closure.error.message if getattr(node.closure, "error", None) else None
        out.append(NodeStatus(node_id, NodeExecution.Phase.Name(node.closure.phase), task_type, tuple(links), err))
    return out


def monitor(
    execution: Any,
    *,
    poll_seconds: float = 10.0,
    timeout_seconds: float | None = None,
    report: Callable[[str], None] = print,
) -> Any:
    """Print the execution's phase and every node's status until it is terminal; return it.

    ``execution``: what :func:`run` returned (a ``FlyteWorkflowExecution``), its ``.id`` (a
    ``WorkflowExecutionIdentifier``) or an execution name in the configured project and domain;
    anything else is a ``TypeError`` naming it, an empty name a ``ValueError``, before the admin is
    contacted.
    ``poll_seconds`` (finite, >= 0) between polls; ``timeout_seconds`` (finite, > 0, or None for no
    limit) before a ``TimeoutError``; each poll's admin calls have ``configure``'s
    ``rpc_timeout_seconds`` deadline. A malformed one is a ``ValueError`` naming it."""
    for name, seconds, least in (("poll_seconds", poll_seconds, 0.0), ("timeout_seconds", timeout_seconds, None)):
        if seconds is None and name == "timeout_seconds":
            continue
        number = isinstance(seconds, int | float) and not isinstance(seconds, bool) and math.isfinite(seconds)
        if not number or (seconds < 0 if least == 0.0 else seconds <= 0):
            raise ValueError(
                f"monitor {name}={seconds!r}: expected a finite number of seconds {'>=' if least == 0.0 else '>'} 0"
            )
    execution = _execution_asked(execution, "monitor")
    deadline = None if timeout_seconds is None else time.monotonic() + timeout_seconds
    last: list[str] = []
    while True:
        ex = _fetch(execution)
        lines = [f"execution {ex.id.name}: {WorkflowExecution.Phase.Name(ex.closure.phase)}"]
        for n in _node_statuses(ex):
            lines.append(f"  {n.node_id:<24} {n.phase:<10} {n.task_type or ''}{'  ' + n.error if n.error else ''}")
        if lines != last:
            report("\n".join(lines))
            last = lines
        if ex.is_done:
            return ex
        if deadline is not None and time.monotonic() > deadline:
            raise TimeoutError(f"execution {ex.id.name} still {lines[0].split(': ')[1]} after {timeout_seconds}s")
        execution = ex
        time.sleep(poll_seconds)


def monitor_sagemaker_jobs(execution: Any, *, report: Callable[[str], None] = print) -> list[NodeStatus]:
    """The execution's SageMaker nodes with their status and console/log links. ``execution`` as
    :func:`monitor` takes it."""
    ex = _fetch(_execution_asked(execution, "monitor_sagemaker_jobs"))
    nodes = [n for n in _node_statuses(ex) if n.task_type and n.task_type.startswith(SAGEMAKER_TASK_TYPE_PREFIXES)]
    for n in nodes:
        report(f"{n.node_id}: {n.phase} ({n.task_type})")
        for name, uri in n.log_links:
            report(f"    {name}: {uri}")
    if not nodes:
        report(f"execution {ex.id.name} has no SageMaker nodes (yet)")
    return nodes


__all__ = ["TaskExecution", "configure", "configure_sagemaker", "monitor", "monitor_sagemaker_jobs", "run"]
