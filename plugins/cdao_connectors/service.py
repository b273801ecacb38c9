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

import logging

from flytekit.loggers import logger as _flytekit_logger

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
