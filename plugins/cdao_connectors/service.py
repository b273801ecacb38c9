"""Module the connector service loads: ``pyflyte serve connector --modules cdao_connectors.service``.

The SageMaker and EMR Serverless connectors register themselves through flytekit's plugin entry
points as soon as flytekit is imported; these imports add the connectors written here and replace
the EMR Serverless one with its idempotent subclass.

The records of ``cdao_connectors.*`` loggers are handed to flytekit's logger, so the service logs in
one format (JSON with ``FLYTE_SDK_RICH_TRACEBACKS=0``, as the Deployment sets) at one level
(``FLYTE_SDK_LOGGING_LEVEL``). flytekit's logger does not propagate and the root logger has no
handler (flytekit 1.16.31 ``loggers.py``), so they would otherwise reach ``logging.lastResort``: bare
text with no level, time or logger name.
"""

import gc
import logging

from flytekit.extend.backend.base_connector import ConnectorRegistry
from flytekit.extras.webhook.connector import WebhookConnector
from flytekit.loggers import logger as _flytekit_logger
from flytekit.sensor.sensor_engine import SensorEngine
from flytekitplugins.spark.connector import DatabricksConnector

from cdao_connectors.aws_batch import connector as aws_batch_connector
from cdao_connectors.codeweave import connector as codeweave_connector
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
if not any(isinstance(h, _ToFlytekit) for h in _package_logger.handlers):
    _package_logger.addHandler(_ToFlytekit())
_package_logger.propagate = False

# Everything imported so far (flytekit, botocore's service models, the plugins: ~200,000 objects)
# lives as long as the process. Left to the collector, every full collection walks all of it, on the
# thread serving GetTasks: 0.1 s alone on an idle core, and full collections come as often as the
# background status passes allocate. gc.freeze moves them out of every later collection
# (https://docs.python.org/3.11/library/gc.html#gc.freeze, advised for long-lived startup state).
gc.freeze()
