"""The SDK's surface does what it says: every accepted keyword changes what runs or is refused with
the reason, routing never contradicts the request, and the control-plane calls name the endpoint."""

from __future__ import annotations

import contextlib
import re
import socket
import threading
import traceback
from collections.abc import Callable, Iterator
from concurrent import futures
from types import SimpleNamespace
from typing import Any

import cdao_sdk
import grpc
import pytest
from cdao_connectors.codeweave.task import CODEWEAVE_TASK_TYPE
from cdao_sdk import cpu_task, gpu_task, sagemaker_training_task, settings, spark_task
from flyteidl.core.execution_pb2 import WorkflowExecution
from flytekit import workflow
from flytekit.models.core.identifier import WorkflowExecutionIdentifier
from propeller import serialize

ROLE = "arn:aws:iam::123456789012:role/sagemaker-exec"


@pytest.fixture(autouse=True)
def clean_settings() -> Iterator[None]:
    settings.reset()
    cdao_sdk.client._remote = None
    yield
    settings.reset()
    cdao_sdk.client._remote = None


def _pod(t) -> dict:
    return serialize(t).k8s_pod.pod_spec


def _f(x: int) -> int:
    return x


# --- 8: monitor(execution.id) -------------------------------------------------------------------


class _Remote:
    """FlyteRemote's calls as flytekit 1.16.31 defines them (flytekit/remote/remote.py): ``execute``
    returns a FlyteWorkflowExecution whose ``.id`` is a WorkflowExecutionIdentifier
    (flytekit/models/execution.py), ``fetch_execution(project, domain, name)``, ``sync_execution``."""

    def __init__(self) -> None:
        self.fetched: list[tuple[str, str, str]] = []

    def execute(self, entity, inputs, project, domain, wait, **kwargs):
        return SimpleNamespace(id=WorkflowExecutionIdentifier(project, domain, "f3a9c1"))

    def fetch_execution(self, project, domain, name):
        self.fetched.append((project, domain, name))
        return SimpleNamespace(name=name)

    def sync_execution(self, execution, sync_nodes):
        return SimpleNamespace(
            id=WorkflowExecutionIdentifier("ml", "staging", execution.name),
            closure=SimpleNamespace(phase=WorkflowExecution.SUCCEEDED),
            is_done=True,
            node_executions={},
        )


def test_monitor_accepts_the_execution_id_as_the_seeds_pass_it():
    remote = _Remote()
    cdao_sdk.configure("flyte.example.com", "ml", "staging", remote=remote)
    execution = cdao_sdk.run(workflow="wf", inputs={})
    lines: list[str] = []
    cdao_sdk.monitor(execution.id, report=lines.append)
    cdao_sdk.monitor_sagemaker_jobs(execution.id, report=lines.append)
    assert remote.fetched == [("ml", "staging", "f3a9c1")] * 2
    assert "f3a9c1: SUCCEEDED" in lines[0]


# --- 12: the endpoint's scheme, and an admin that never answers ---------------------------------


def test_an_http_endpoint_is_plaintext_and_a_contradiction_is_refused():
    remote = cdao_sdk.configure("http://localhost:30080", "ml")
    assert (remote.config.platform.endpoint, remote.config.platform.insecure) == ("localhost:30080", True)
    assert cdao_sdk.configure("https://flyte.example.com", "ml").config.platform.insecure is False
    with pytest.raises(ValueError, match=r"scheme says insecure=False"):
        cdao_sdk.configure("https://flyte.example.com", "ml", insecure=True)


@pytest.fixture
def silent_endpoint() -> Iterator[str]:
    """A TCP port on 127.0.0.1 that accepts connections and never answers (a hung admin)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(16)
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.1)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except TimeoutError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        yield f"127.0.0.1:{server.getsockname()[1]}"
    finally:
        stop.set()
        thread.join()
        for conn in held:
            conn.close()
        server.close()


@pytest.mark.parametrize("call", ["run", "monitor"])
def test_an_admin_that_never_answers_is_named(silent_endpoint, call):
    @workflow
    def wf(x: int) -> int:
        return _f_task(x=x)

    cdao_sdk.configure(f"http://{silent_endpoint}", "ml", connect_timeout_seconds=0.5)
    with pytest.raises(ConnectionError, match=rf"Flyte admin at {silent_endpoint} did not answer over plaintext"):
        if call == "run":
            cdao_sdk.run(wf, {"x": 1})
        else:
            cdao_sdk.monitor(WorkflowExecutionIdentifier("ml", "development", "f3a9c1"))


@cdao_sdk.task
def _f_task(x: int) -> int:
    return x


@contextlib.contextmanager
def _admin_serving(handler: Callable[[str], Callable[[Any, grpc.ServicerContext], Any]]) -> Iterator[str]:
    """A real gRPC server on 127.0.0.1 answering each method with ``handler(method name)`` (a method
    handler), at the address it yields; a call held by :func:`_hang` ends when the server stops."""

    class Handler(grpc.GenericRpcHandler):
        def service(self, handler_call_details):
            return grpc.unary_unary_rpc_method_handler(handler(handler_call_details.method.rpartition("/")[2]))

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers((Handler(),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        _stopping.set()
        server.stop(0)
        _stopping.clear()


_stopping = threading.Event()


def _hang(request: Any, context: grpc.ServicerContext) -> None:
    _stopping.wait()


@pytest.fixture
def hung_admin() -> Iterator[str]:
    """An admin that takes every call and never answers it (a hung admin: the channel is READY, so
    only a per-call deadline ends the wait)."""
    with _admin_serving(lambda method: _hang) as address:
        yield address


@pytest.mark.parametrize("call", ["run", "monitor", "monitor_sagemaker_jobs", "monitor_by_name"])
def test_every_admin_call_has_a_deadline_and_names_the_endpoint_and_the_ask(hung_admin, call):
    @workflow
    def wf(x: int) -> int:
        return _f_task(x=x)

    cdao_sdk.configure(f"http://{hung_admin}", "ml", connect_timeout_seconds=2, rpc_timeout_seconds=0.2)
    asked = {
        "run": r"execute\(.*wf",
        "monitor": r"fetch_execution\(project='ml', domain='staging', name='f3a9c1'\)",
        "monitor_sagemaker_jobs": r"fetch_execution\(project='ml', domain='staging', name='f3a9c1'\)",
        "monitor_by_name": r"fetch_execution\(project='ml', domain='development', name='f3a9c1'\)",
    }[call]
    with pytest.raises(TimeoutError, match=rf"Flyte admin at http://{hung_admin} .*did not answer {asked}.* 0\.2 ?s"):
        if call == "run":
            cdao_sdk.run(wf, {"x": 1})
        elif call == "monitor_by_name":
            cdao_sdk.monitor("f3a9c1", report=lambda _: None)
        else:
            getattr(cdao_sdk, call)(WorkflowExecutionIdentifier("ml", "staging", "f3a9c1"), report=lambda _: None)


def _not_found(request: Any, context: grpc.ServicerContext) -> None:
    context.abort(grpc.StatusCode.NOT_FOUND, "entity not found")


@pytest.fixture
def admin_that_never_registers() -> Iterator[str]:
    """An admin that knows no entity (every Get/List is NOT_FOUND, as flyteadmin answers for an
    unregistered workflow) and never answers a Create: ``run`` has to register, which flytekit does
    on its own threads (remote.py ``_serialize_and_register``)."""
    with _admin_serving(lambda method: _not_found if method.startswith(("Get", "List")) else _hang) as address:
        yield address


def test_registering_inside_run_has_the_deadline_too(admin_that_never_registers):
    @workflow
    def wf(x: int) -> int:
        return _f_task(x=x)

    cdao_sdk.configure(f"http://{admin_that_never_registers}", "ml", connect_timeout_seconds=2, rpc_timeout_seconds=0.2)
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            cdao_sdk.run(wf, {"x": 1}, version="v1")
        except BaseException as error:  # handed to the test's thread
            outcome.append(error)

    # On a thread, so that a registration with no deadline fails this test instead of hanging it.
    caller = threading.Thread(target=run, daemon=True)
    caller.start()
    caller.join(10)
    assert not caller.is_alive(), "run() still registering after 10 s: a registration call has no deadline"
    (error,) = outcome
    assert isinstance(error, TimeoutError), repr(error)
    assert re.search(rf"Flyte admin at http://{admin_that_never_registers} .*did not answer execute\(", str(error))


@pytest.mark.parametrize(
    ("keyword", "value"),
    [
        ("connect_timeout_seconds", float("inf")),
        ("connect_timeout_seconds", float("nan")),
        ("connect_timeout_seconds", 0),
        ("connect_timeout_seconds", -1),
        ("connect_timeout_seconds", True),
        ("rpc_timeout_seconds", float("inf")),
        ("rpc_timeout_seconds", 0),
        ("rpc_timeout_seconds", -0.5),
    ],
)
def test_configure_refuses_a_timeout_that_is_not_a_finite_positive_number(keyword, value):
    with pytest.raises(ValueError, match=rf"configure {keyword}={value!r}: expected a (finite )?number"):
        cdao_sdk.configure("http://localhost:30080", "ml", **{keyword: value})
    assert settings.get("admin_endpoint") is None  # nothing half-recorded


@pytest.mark.parametrize(
    ("keyword", "value", "expected"),
    [
        ("timeout_seconds", float("inf"), "> 0"),
        ("timeout_seconds", 0, "> 0"),
        ("poll_seconds", float("nan"), ">= 0"),
        ("poll_seconds", -1, ">= 0"),
    ],
)
def test_monitor_refuses_a_malformed_wait_before_contacting_the_admin(keyword, value, expected):
    cdao_sdk.configure("http://localhost:30080", "ml", remote=_Remote())
    with pytest.raises(
        ValueError, match=rf"monitor {keyword}={value!r}: expected a finite number of seconds {expected}"
    ):
        cdao_sdk.monitor("f3a9c1", report=lambda _: None, **{keyword: value})
    assert cdao_sdk.client._remote.fetched == []


@pytest.mark.parametrize(
    ("endpoint", "reason"),
    [
        ("localhost:99999", "port 99999 is outside 1-65535"),
        ("localhost:0", "port 0 is outside 1-65535"),
        ("http://flyte:65536", "port 65536 is outside 1-65535"),
        ("localhost:http", "port 'http' is not a number"),
        ("http://user@host:80", "user information"),
        ("https://user:secret@host", "user information"),
        (" host:443", "whitespace"),
        ("host:443\n", "whitespace"),
        ("fl yte:443", "whitespace"),
        ("ftp://host", "expected host"),
        ("http://", "expected host"),
        ("", "expected host"),
        ("https://host/path", "expected host"),
        ("https://host?x=1", "expected host"),
        ("host#frag", "expected host"),
        ("[::1", "expected host"),
        ("host:", "expected host"),
        ("://host", "expected host"),
        # The host's grammar: an RFC 1123 name, an IPv4 dotted quad or a bracketed IPv6 address (RFC 3986 3.2.2).
        ("local_host!:80", "host 'local_host!' is not"),
        ("localhost;rm:80", "host 'localhost;rm' is not"),
        ("-flyte.example.com", "host '-flyte.example.com' is not"),
        ("flyte-.example.com", "host 'flyte-.example.com' is not"),
        ("flyte..example.com", "host 'flyte..example.com' is not"),
        (f"{'a' * 64}.example.com", f"host '{'a' * 64}.example.com' is not"),
        ("flyté.example.com", "host 'flyté.example.com' is not"),
        ("999.1.1.1:80", "host '999.1.1.1' is not"),
        ("10.0.0:80", "host '10.0.0' is not"),
        ("[::g]:80", r"host '\[::g\]' is not"),
        ("[10.0.0.1]:80", r"host '\[10.0.0.1\]' is not"),
        # RFC 3986 3.2.3: a port is ASCII digits (str.isdigit() takes any script's digits).
        ("http://localhost:\u0663\u0660\u0660\u0668\u0660", "port '\u0663\u0660\u0660\u0668\u0660' is not a number"),
        ("localhost:+80", "port '\\+80' is not a number"),
    ],
)
def test_configure_refuses_a_malformed_admin_endpoint_naming_it(endpoint, reason):
    with pytest.raises(ValueError, match=rf"configure admin_endpoint={re.escape(repr(endpoint))}: .*{reason}"):
        cdao_sdk.configure(endpoint, "ml", remote=object())
    assert settings.get("admin_endpoint") is None


@pytest.mark.parametrize(
    ("endpoint", "target", "insecure"),
    [
        ("http://localhost:30080", "localhost:30080", True),
        ("HTTPS://Flyte.example.com", "Flyte.example.com", False),  # RFC 3986 3.1: schemes are case-insensitive
        ("flyte.example.com:443", "flyte.example.com:443", False),
        ("https://flyte.example.com/", "flyte.example.com", False),
        ("http://[::1]:8089", "[::1]:8089", True),
        ("dns:///flyte.example.com:443", "flyte.example.com:443", False),
        ("flyte.example.com.:443", "flyte.example.com.:443", False),  # a fully qualified name's root label
        ("flyteadmin.flyte.svc.cluster.local:81", "flyteadmin.flyte.svc.cluster.local:81", False),
        ("http://127.0.0.1:30080", "127.0.0.1:30080", True),
        ("https://[2001:db8::8a2e:370:7334]", "[2001:db8::8a2e:370:7334]", False),
        ("3com.example.com:65535", "3com.example.com:65535", False),  # RFC 1123 2.1: a label may start with a digit
    ],
)
def test_configure_takes_every_documented_endpoint_form(endpoint, target, insecure):
    platform = cdao_sdk.configure(endpoint, "ml").config.platform
    assert (platform.endpoint, platform.insecure) == (target, insecure)


# --- 13: Kubernetes quantities --------------------------------------------------------------------


@pytest.mark.parametrize("cpu", ["500m", "0.5", "2", "1.5", "+1", "1e3", "2E0", ".5"])
def test_cpu_takes_every_quantity_kubernetes_documents(cpu):
    t = cpu_task(cpu=cpu, memory="512Mi")(_f)
    assert _primary_requests(t)["cpu"] == cpu


@pytest.mark.parametrize(
    ("value", "message"),
    [
        ("2 cores", "not a Kubernetes quantity"),
        ("1K", "not a Kubernetes quantity"),
        ("1ki", "not a Kubernetes"),
        ("-1", "greater than 0"),
        ("0", "greater than 0"),
        ("", "not a Kubernetes quantity"),
        ("NaN", "not a Kuber"),
    ],
)
def test_cpu_refuses_what_is_not_a_positive_quantity(value, message):
    with pytest.raises(ValueError, match=rf"cpu_task cpu='{value}'.*{message}"):
        cpu_task(cpu=value)(_f)


def _primary_requests(t) -> dict:
    return next(c for c in _pod(t)["containers"] if c["name"] == "primary")["resources"]["requests"]


# --- 9: an accepted keyword changes what runs, or is refused with the reason ---------------------


def test_inference_on_codeweave_picks_the_inference_gpu_and_is_never_silently_dropped():
    train = gpu_task(_f)
    infer = gpu_task(inference=True)(_f)
    assert serialize(train).type == serialize(infer).type == CODEWEAVE_TASK_TYPE
    assert serialize(train).custom["gpu_type"] == "nvidia-a100-80gb"
    assert serialize(infer).custom["gpu_type"] == "nvidia-l40s"
    # The Codeweave job body has no inference field (cdao_connectors/codeweave/contract.py).
    assert "inference" not in serialize(infer).custom
    with pytest.raises(ValueError, match=r"gpu_task inference=True: on Codeweave it only picks the default GPU"):
        gpu_task(gpu_type="nvidia-h100-80gb", inference=True)(_f)


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        (
            lambda: spark_task(cluster_id="j-2AXXXXXXGAPLF", execution_role_arn=ROLE),
            r"\{'execution_role_arn': .*\} are EMR Serverless settings",
        ),
        (lambda: spark_task(instance_type="m5.xlarge", application_id="00fabc123"), "are EMR Serverless settings"),
        (
            lambda: sagemaker_training_task(use_spot_instances=False, max_wait_seconds=7200),
            r"max_wait_seconds=7200: the wait budget is for managed spot",
        ),
        (lambda: spark_task(ml=True), r"spark_task ml=True: Spark MLlib ships with every EMR release"),
        (lambda: cdao_sdk.batch_task(spot=True, on_demand=True), "spot=True, on_demand=True disagree"),
        (lambda: cdao_sdk.batch_task(platform="emr"), "runs on 'aws-batch' only"),
        (lambda: sagemaker_training_task(instance_count=2), "instance_count=1"),
    ],
)
def test_keywords_that_would_be_ignored_are_refused_with_the_reason(decorate, message):
    with pytest.raises(ValueError, match=message):
        decorate()(_f)


@pytest.mark.parametrize(
    ("decorator", "name"),
    [
        (cdao_sdk.task, "task"),
        (cpu_task, "cpu_task"),
        (cdao_sdk.batch_task, "batch_task"),
        (spark_task, "spark_task"),
        (sagemaker_training_task, "sagemaker_training_task"),
        (cdao_sdk.sagemaker_processing_task, "sagemaker_processing_task"),
    ],
)
def test_an_unknown_keyword_names_the_decorator(decorator, name):
    with pytest.raises(TypeError, match=rf"^{name} got unknown keyword\(s\) \['colour'\]; it takes"):
        decorator(colour="blue")(_f)
    with pytest.raises(TypeError, match=r"^gpu_task got unknown keyword\(s\) \['gpu_count'\]"):
        gpu_task(gpu_type="a100", gpu_count=2)(_f)


def test_seed_spellings_change_the_queue():
    on_demand = serialize(cdao_sdk.batch_task(platform="aws-batch", spot_instances=False)(_f))
    assert (on_demand.custom["spot"], on_demand.metadata.retries.retries) == (False, 3)
    assert serialize(cdao_sdk.batch_task(on_demand=True)(_f)).custom["spot"] is False
    assert serialize(cdao_sdk.batch_task(spot_instances=True)(_f)).custom["spot"] is True


def test_instance_count_reaches_the_sagemaker_job():
    cdao_sdk.configure_sagemaker(sagemaker_role=ROLE, default_bucket="ml-art", region="us-east-1")
    custom = serialize(sagemaker_training_task(instance_count=1, container_image="img:1")(_f)).custom
    assert custom["instance_count"] == 1 and custom["execution_role_arn"] == ROLE


# --- 10: routing never contradicts the request ----------------------------------------------------


def test_inference_on_the_training_only_h100_pool_is_refused():
    with pytest.raises(ValueError, match=r"pool h100-timeslice runs no inference .*use gpu_type='a100'"):
        gpu_task(gpu_type="h100", inference=True)(_f)


def test_training_on_mig_slices_is_refused_and_inference_lands_on_inference_pools():
    with pytest.raises(ValueError, match=r"inference=False: pool a100-mig runs no training"):
        gpu_task(gpu_type="a100", mig_profile="1g.10gb", inference=False)(_f)
    assert _pod(gpu_task(gpu_type="a100", inference=True)(_f))["nodeSelector"] == {
        "cdao.io/node-pool": "a100-timeslice",
        "workload-type.cdao.io/batch-inference": "true",
    }
    assert (
        _pod(gpu_task(gpu_type="a100", mig_profile="1g.10gb")(_f))["nodeSelector"][
            "workload-type.cdao.io/production-inference"
        ]
        == "true"
    )
    with pytest.raises(ValueError, match=r"inference=True contradicts workload_type='training'"):
        gpu_task(gpu_type="a100", inference=True, workload_type="training")(_f)


# --- 11: EMR Serverless registration needs its application ----------------------------------------


def test_registering_serverless_spark_without_an_application_names_the_setting(monkeypatch):
    monkeypatch.delenv("CDAO_EMR_SERVERLESS_APPLICATION_ID", raising=False)
    t = spark_task()(_f)
    cdao_sdk.configure(
        "flyte.example.com", "ml", region="eu-west-1", emr_serverless_role="arn:aws:iam::123456789012:role/emr"
    )
    with pytest.raises(ValueError, match=r"needs the 'emr_serverless_application_id' setting"):
        serialize(t)
    assert serialize(spark_task(application_id="00fabc123")(_f)).custom["application_id"] == "00fabc123"


# --- 14: the batch transform is not a decorator, and says so --------------------------------------


def test_batch_transform_used_as_a_decorator_runs_locally_and_is_refused_at_registration():
    @cdao_sdk.sagemaker_batch_transform_task(instance_type="ml.m5.large", strategy="SingleRecord")
    def batch_inference(model_path: str, input_data_path: str) -> str:
        return "s3://bucket/batch-predictions.csv"

    @cdao_sdk.sagemaker_batch_transform_task
    def bare(model_path: str) -> str:
        return model_path

    assert batch_inference(model_path="m", input_data_path="d") == "s3://bucket/batch-predictions.csv"
    assert bare(model_path="m") == "m"
    for decorated in (batch_inference, bare):
        with pytest.raises(ValueError, match=r"never a function body, so it cannot be registered.*score = sagemaker"):
            serialize(decorated)


def test_a_batch_job_naming_an_instance_type_runs_locally_and_is_refused_at_registration():
    @cdao_sdk.batch_task(instance_type="c5.4xlarge", spot_instances=True)
    def prep(raw: str) -> str:
        return raw.upper()

    assert prep(raw="a") == "A"
    with pytest.raises(ValueError, match=r"batch_task .*prep instance_type='c5\.4xlarge'.*vcpus= and memory="):
        serialize(prep)


@pytest.fixture
def not_an_admin() -> Iterator[str]:
    """A real gRPC server on 127.0.0.1 serving no Flyte service: every admin call is UNIMPLEMENTED."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=2))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(0)


def test_an_admin_error_names_the_endpoint_and_the_grpc_status(not_an_admin):
    cdao_sdk.configure(f"http://{not_an_admin}", "ml", connect_timeout_seconds=5)
    with pytest.raises(RuntimeError, match=rf"Flyte admin at http://{not_an_admin} .* answered UNIMPLEMENTED"):
        cdao_sdk.monitor(WorkflowExecutionIdentifier("ml", "development", "f3a9c1"))


# --- review of #16, 3: one shape per setting, wherever it comes from ------------------------------

_ADMIN = "http://localhost:30080"


@pytest.mark.parametrize(
    ("setting", "bad", "expected"),
    [
        ("sagemaker_role", "not-an-arn", "IAM role ARN"),
        ("sagemaker_role", "arn:aws:iam::acct:role/x", "IAM role ARN"),  # the account is 12 digits
        ("emr_serverless_role", "bogus", "IAM role ARN"),
        ("default_bucket", "s3://mybucket", "S3 bucket name"),
        ("default_bucket", "My_Bucket", "S3 bucket name"),
        ("default_bucket", "a..b", "S3 bucket name"),
        ("default_bucket", "192.168.5.4", "S3 bucket name"),
        ("region", "mars-1", "AWS region"),
    ],
)
def test_configure_and_configure_sagemaker_refuse_a_malformed_setting_naming_it(monkeypatch, setting, bad, expected):
    for variable in ("CDAO_AWS_REGION", "AWS_REGION", "CDAO_SAGEMAKER_ROLE_ARN", "CDAO_EMR_SERVERLESS_ROLE_ARN"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.delenv("CDAO_DEFAULT_BUCKET", raising=False)
    with pytest.raises(ValueError, match=rf"configure {setting}={bad!r}: expected .*{expected}"):
        cdao_sdk.configure(_ADMIN, "p", remote=object(), **{setting: bad})
    if setting in ("sagemaker_role", "default_bucket", "region"):
        with pytest.raises(ValueError, match=rf"configure_sagemaker {setting}={bad!r}: expected .*{expected}"):
            cdao_sdk.configure_sagemaker(**{setting: bad})
    assert settings.get(setting) is None  # nothing half-recorded


def test_the_same_role_arn_rule_holds_for_configure_sagemaker_and_the_decorators():
    partitioned = "arn:aws-us-gov:iam::123456789012:role/service-role/exec"
    cdao_sdk.configure_sagemaker(sagemaker_role=partitioned, default_bucket="ml-art.v2", region="us-gov-west-1")
    cdao_sdk.configure(_ADMIN, "p", remote=object(), emr_serverless_role=partitioned, region="eu-west-1")
    with pytest.raises(ValueError, match=r"execution_role_arn='arn:aws:iam::acct:role/x': expected .*IAM role ARN"):
        sagemaker_training_task(execution_role_arn="arn:aws:iam::acct:role/x")(_f)


@pytest.mark.parametrize(
    ("variable", "setting", "bad"),
    [
        ("CDAO_SAGEMAKER_ROLE_ARN", "sagemaker_role", "not-an-arn"),
        ("CDAO_DEFAULT_BUCKET", "default_bucket", "s3://mybucket"),
        ("CDAO_AWS_REGION", "region", "mars-1"),
        ("AWS_REGION", "region", "mars-1"),
    ],
)
def test_an_environment_fallback_is_checked_naming_the_variable(monkeypatch, variable, setting, bad):
    for name in ("CDAO_AWS_REGION", "AWS_REGION"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv(variable, bad)
    with pytest.raises(ValueError, match=rf"environment variable {variable}={bad!r} \(the {setting!r} setting\)"):
        settings.require(setting, "test")
    with pytest.raises(ValueError, match=rf"{variable}={bad!r}"):
        settings.get(setting)


def test_a_misconfigured_environment_fails_registration_not_the_job(monkeypatch):
    monkeypatch.setenv("CDAO_SAGEMAKER_ROLE_ARN", "not-an-arn")
    monkeypatch.setenv("CDAO_AWS_REGION", "us-east-1")
    monkeypatch.setenv("CDAO_DEFAULT_BUCKET", "ml-art")
    with pytest.raises(ValueError, match=r"CDAO_SAGEMAKER_ROLE_ARN='not-an-arn'"):
        serialize(sagemaker_training_task(container_image="img:1")(_f))


# --- review of #16, 6: a config's own check names the decorator and the keyword written -----------


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        (lambda: sagemaker_training_task(max_runtime_seconds=-1), "sagemaker_training_task: max_runtime_seconds "),
        (lambda: sagemaker_training_task(volume_size_gb=0), "sagemaker_training_task: volume_size_gb "),
        (lambda: cdao_sdk.sagemaker_processing_task(instance_count=3), "sagemaker_processing_task: .*instance_count"),
        (lambda: spark_task(instance_type="m5.xlarge", instance_count=-1), "spark_task: instance_count=-1"),
        (lambda: cdao_sdk.batch_task(vcpus=0), "batch_task: vcpus=0"),
    ],
)
def test_a_configs_own_check_names_the_decorator_and_keyword(decorate, message):
    with pytest.raises(ValueError, match=message) as refused:
        decorate()(_f)
    assert "_in_seconds" not in str(refused.value) and "_in_gb" not in str(refused.value)


# --- a decorator's error names the function it decorates ----------------------------------------


def _fit(x: int) -> int:
    return x


@pytest.mark.parametrize(
    ("decorate", "message"),
    [
        # a keyword's annotation, its shape, an unknown keyword, a refused one
        (lambda: gpu_task(gpus="2"), r"gpu_task gpus='2': expected an integer"),
        (lambda: spark_task(execution_role_arn="arn:aws:iam::acct:role/x"), r"expected an IAM role ARN"),
        (lambda: gpu_task(gpu_type="a100", gpu_count=2), r"^gpu_task got unknown keyword\(s\) \['gpu_count'\]"),
        (lambda: spark_task(ml=True), r"spark_task ml=True: Spark MLlib ships"),
        # routing, pools, quantities, a config's own check
        (lambda: gpu_task(gpu_type="tpu-v5"), r"neither an EKS pool GPU"),
        (lambda: gpu_task(gpu_type="h100", inference=True), r"pool h100-timeslice runs no inference"),
        (lambda: cpu_task(cpu="lots"), r"cpu_task cpu='lots'"),
        (lambda: cdao_sdk.task(workload_type="gaming"), r"not served by any node pool"),
        (lambda: cdao_sdk.batch_task(spot=True, on_demand=True), r"disagree on the queue"),
        (lambda: spark_task(instance_type="m5.xlarge", instance_count=-1), r"spark_task: instance_count=-1"),
        (lambda: sagemaker_training_task(max_runtime_seconds=-1), r"sagemaker_training_task: max_runtime_seconds"),
        (lambda: cdao_sdk.sagemaker_processing_task(instance_type="m5.xlarge"), r"instance_type='m5.xlarge'"),
        (lambda: cdao_sdk.sagemaker_task(job_type="tuning"), r"sagemaker_task job_type='tuning'"),
        (lambda: cdao_sdk.sagemaker_task(job_type="training", volume_size_gb=0), r"volume_size_gb"),
        (lambda: cdao_sdk.sagemaker_batch_transform_task(instance_type="ml.nope"), r"instance_type='ml.nope'"),
    ],
)
def test_a_decorators_error_names_the_decorated_function(decorate, message):
    """A notebook or a package defines many tasks: the error says which one, by module and qualified name."""
    with pytest.raises((ValueError, TypeError), match=message) as raised:
        decorate()(_fit)
    assert f"{__name__}._fit" in str(raised.value)


def test_a_bare_decorators_error_names_the_decorated_function():
    """``@gpu_task`` without parentheses, on a function flytekit cannot type (an input without an
    annotation: flytekit/core/interface.py ``transform_function_to_interface`` raises
    FlyteMissingTypeException naming only the input)."""

    class Pipelines:
        @staticmethod
        def untyped(x):
            return x

    with pytest.raises(Exception, match="'x' has no type") as raised:
        gpu_task(Pipelines.untyped)
    # flytekit's exception computes its message from its fields, so the function is named in a
    # PEP 678 note, which every traceback prints.
    printed = "".join(traceback.format_exception(raised.value))
    assert f"{__name__}.{Pipelines.untyped.__qualname__}" in printed


def test_a_transform_definitions_error_names_the_task():
    """``sagemaker_batch_transform_task("<name>", ...)`` defines a task without a function: its errors
    name the task being defined instead."""
    with pytest.raises(ValueError, match=r"strategy='Bulk'.*\(defining task 'pipelines\.score'\)$"):
        cdao_sdk.sagemaker_batch_transform_task("pipelines.score", strategy="Bulk")
