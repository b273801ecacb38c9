"""Module the connector service loads: ``pyflyte serve connector --modules cdao_connectors.service``.

The SageMaker and EMR Serverless connectors register themselves through flytekit's plugin entry
points as soon as flytekit is imported; these imports add the connectors written here and replace
the EMR Serverless one with its idempotent subclass.

The records of ``cdao_connectors.*`` loggers are handed to flytekit's logger, so the service logs in
one format (JSON with ``FLYTE_SDK_RICH_TRACEBACKS=0``, as the Deployment sets) at one level
(``FLYTE_SDK_LOGGING_LEVEL``). flytekit's logger does not propagate and the root logger has no
handler (flytekit 1.16.31 ``loggers.py``), so they would otherwise reach ``logging.lastResort``: bare
text with no level, time or logger name.

On SIGTERM it refuses new CreateTasks, lets the creates under way finish (answering their
CreateTasks) or gives them up and cancels their jobs, tries the cancels still pending of jobs whose
CreateTask gave up once more, serving GetTasks and DeleteTasks meanwhile, and logs each job not
stopped, before ending as SIGTERM ends a process (``SHUTDOWN_CANCEL_SECONDS``): as left to the
attempt table's sweeper when its attempt is in the sweep index, else counted as left running
(``cdao_jobs_left_running_total``).

Every replica sweeps the attempt table (``cdao_connectors._sweeper``, started here on a thread of its
own): it stops the jobs whose attempt nobody follows any more, those of replicas that ended included.
"""

import asyncio
import gc
import logging
import signal
import threading
from types import FrameType

from flytekit.extend.backend.base_connector import ConnectorRegistry
from flytekit.extras.webhook.connector import WebhookConnector
from flytekit.loggers import logger as _flytekit_logger
from flytekit.sensor.sensor_engine import SensorEngine
from flytekitplugins.spark.connector import DatabricksConnector

from cdao_connectors import _deadlines
from cdao_connectors._backends import finish_shutdown, pending_work_loop, stop_starting_creates
from cdao_connectors._sweeper import start_sweeping
from cdao_connectors.aws_batch import connector as aws_batch_connector
from cdao_connectors.codeweave import connector as codeweave_connector
from cdao_connectors.config import ConnectorConfigError, sweep_period_seconds
from cdao_connectors.emr import connector as emr_connector
from cdao_connectors.emr import serverless as emr_serverless_connector
from cdao_connectors.sagemaker import connector as sagemaker_connector

__all__ = [
    "aws_batch_connector",
    "codeweave_connector",
    "emr_connector",
    "emr_serverless_connector",
    "sagemaker_connector",
]


# Connectors flytekit and its plugins register on import that run what a task's ``custom`` names under
# the service's identity, and that no SDK task or seed uses: flytekit's sensor engine imports the module
# a task names and calls it (flytekit 1.16.31 ``sensor/sensor_engine.py``); flytekitplugins-spark's
# Databricks connectors send a bearer token to the host a task names (``flytekitplugins/spark/connector.py``);
# flytekit's webhook connector sends any request to any URL a task names and returns the answer
# (``flytekit/extras/webhook/connector.py``). ``pyflyte serve connector`` imports the webhook one only
# when the server starts, after ``--modules`` (``clis/sdk_in_container/serve.py`` ``_start_grpc_server``);
# importing it above registers it now, so it is removed here and not registered again.
NOT_SERVED: tuple[type, ...] = (SensorEngine, DatabricksConnector, WebhookConnector)


def _stop_serving(connectors: tuple[type, ...]) -> None:
    """Takes every registered connector that is an instance of one of ``connectors`` out of the service.

    Propeller routes every task type ``ListAgents`` advertises (flyteplugins v1.16.8
    ``go/tasks/plugins/webapi/connector/client.go`` ``getConnectorRegistry``), so such a connector must
    not even be listed. Hand-written: flytekit's ``ConnectorRegistry`` has no way to unregister."""
    registry = ConnectorRegistry._REGISTRY
    for category in [c for c, connector in registry.items() if isinstance(connector, connectors)]:
        name = registry.pop(category).name
        ConnectorRegistry._METADATA.pop(name, None)


_stop_serving(NOT_SERVED)


class _ToFlytekit(logging.Handler):
    """Hands a record to flytekit's logger, at that logger's level at the time of the record:
    ``pyflyte`` sets it when the command starts (``ErrorHandlingCommand.invoke``), and flytekit may
    replace its handlers (``set_flytekit_log_properties``), so neither is copied here.
    Hand-written: the standard library forwards records only up the logger hierarchy."""

    def emit(self, record: logging.LogRecord) -> None:
        if record.levelno >= _flytekit_logger.getEffectiveLevel():
            _flytekit_logger.handle(record)


_package_logger = logging.getLogger("cdao_connectors")
_log = logging.getLogger("cdao_connectors.service")
if not any(isinstance(h, _ToFlytekit) for h in _package_logger.handlers):
    _package_logger.addHandler(_ToFlytekit())
_package_logger.propagate = False

# Kubernetes ends a replica (an HPA scale-down, a rollout) with SIGTERM, then SIGKILL once the pod's
# terminationGracePeriodSeconds have passed (platform/addons/connectors/base/deployment.yaml;
# https://kubernetes.io/docs/concepts/workloads/pods/pod-lifecycle/#pod-termination). The SIGTERM
# comes after the container's preStop sleep, by which time the pod's removal from the Service's
# Endpoints has reached propeller's resolver, so that the CreateTasks refused from then on are only
# those propeller sent before it learnt the pod is going (the Deployment says why). What this
# process holds lives here only: a create under way, whose CreateTask the process's end would fail
# with its job started (propeller never DeleteTasks a job it got no resource_meta for: flyteplugins
# plugins/webapi/connector/plugin.go ``Delete`` at flyteplugins/v1.16.8), and late cancels
# (cdao_connectors._backends.create_within_deadline). SIGTERM's default action would drop both: jobs
# running on with nobody to stop them and nothing logged. Neither pyflyte nor asyncio handles SIGTERM
# (flytekit 1.16.31 clis/sdk_in_container/serve.py runs the server with asyncio.run, which handles
# only SIGINT), so the handler is installed here, at import, in the main thread that then runs the
# event loop. It refuses every later create at once; with creates, late cancels, GetTasks or
# DeleteTasks pending it finishes them within SHUTDOWN_CANCEL_SECONDS less _deadlines.MARGIN_SECONDS
# (cdao_connectors._backends.finish_shutdown: creates answered or given up and their jobs cancelled,
# each job not stopped logged, the calls being served answered), serving GetTasks and DeleteTasks
# meanwhile, keeps serving for the margin, in which the last answers reach propeller, then ends the
# process as SIGTERM would have; with none it does so at once.
# The budget holds a DeleteTask-bounded try (10 s) after the creates' share, which is a whole CreateTask
# budget (29 s), so that the shutdown alone never gives up a create AWS answers in time (its job is
# answered and followed); the preStop sleep and the budget fit inside the grace period with time to
# end, and the Linkerd proxy outlives both (the Deployment's
# config.alpha.linkerd.io/proxy-wait-before-exit-seconds): tests/plugins check them together.
SHUTDOWN_CANCEL_SECONDS = 40.0
_sigterm_before = signal.getsignal(signal.SIGTERM)
_shutdown: set[asyncio.Task[None]] = set()  # the shutdown's task, referenced while it runs
_shutdown_started = threading.Event()


def _end_as_before(signum: int) -> None:
    # getsignal answers None for a handler not set from Python; only the default can be put back then.
    signal.signal(signum, signal.SIG_DFL if _sigterm_before is None else _sigterm_before)
    signal.raise_signal(signum)


async def _finish_then_end(signum: int) -> None:
    _log.warning("SIGTERM: refusing new creates, finishing the creates and cancels under way before ending")
    try:
        await finish_shutdown(SHUTDOWN_CANCEL_SECONDS - _deadlines.MARGIN_SECONDS)
        await asyncio.sleep(_deadlines.MARGIN_SECONDS)
    finally:
        _end_as_before(signum)


def _start_shutdown(loop: asyncio.AbstractEventLoop, signum: int) -> None:
    _shutdown.add(loop.create_task(_finish_then_end(signum)))


def _on_sigterm(signum: int, frame: FrameType | None) -> None:
    stop_starting_creates()  # first: a create starting after this line is refused, not cut off
    loop = pending_work_loop()
    if loop is None:
        _end_as_before(signum)
        return
    if _shutdown_started.is_set():
        return  # a repeated SIGTERM: the shutdown under way ends the process
    _shutdown_started.set()
    # A Python signal handler runs between two bytecodes of the main thread, possibly inside the
    # event loop's own code: the loop is handed the work through its thread-safe entry.
    loop.call_soon_threadsafe(_start_shutdown, loop, signum)


# Never replaces a handler someone else installed; signal.signal works only in the main thread.
if _sigterm_before in (signal.SIG_DFL, None) and threading.current_thread() is threading.main_thread():
    signal.signal(signal.SIGTERM, _on_sigterm)

# A malformed CDAO_SWEEP_PERIOD_SECONDS fails the service's start with one line naming it.
try:
    sweep_period_seconds()
except ConnectorConfigError as bad:
    raise SystemExit(f"cdao connector service: {bad}") from None
start_sweeping()

# Everything imported so far (flytekit, botocore's service models, the plugins: ~200,000 objects)
# lives as long as the process. Left to the collector, every full collection walks all of it, on the
# thread serving GetTasks: 0.1 s alone on an idle core, and full collections come as often as the
# background status passes allocate. gc.freeze moves them out of every later collection
# (https://docs.python.org/3.11/library/gc.html#gc.freeze, advised for long-lived startup state).
gc.freeze()
