"""The connector service's own log records go where flytekit's go, in its format and at its level.

flytekit's ``flytekit`` logger does not propagate and owns the service's handler (flytekit 1.16.31
loggers.py: ``logger.propagate = False``; ``initialize_global_loggers`` picks rich or JSON); the
root logger has none, so a record of ``cdao_connectors.*`` would otherwise reach Python's
``logging.lastResort``: bare text on stderr, no level, time or logger name, a traceback over many
lines (Python docs, logging "What happens if no configuration is provided"). pytest attaches its
own capture to every non-propagating logger, so these tests watch flytekit's handlers, not caplog.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import cdao_connectors.service  # noqa: F401  (the module ``--modules`` loads: it wires the logging)
import pytest
from flytekit.loggers import logger as flytekit_logger


class _Capture(logging.Handler):
    def __init__(self) -> None:
        super().__init__()
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture
def flytekit_handler() -> Iterator[_Capture]:
    capture = _Capture()
    level = flytekit_logger.level
    flytekit_logger.addHandler(capture)
    try:
        yield capture
    finally:
        flytekit_logger.removeHandler(capture)
        flytekit_logger.setLevel(level)


def test_a_connector_warning_goes_through_flytekits_handler(flytekit_handler):
    flytekit_logger.setLevel(logging.WARNING)  # FLYTE_SDK_LOGGING_LEVEL=30, as the Deployment sets
    logging.getLogger("cdao_connectors._status_cache").warning("background refresh failed", exc_info=True)
    assert [(r.name, r.levelname, r.getMessage()) for r in flytekit_handler.records] == [
        ("cdao_connectors._status_cache", "WARNING", "background refresh failed")
    ]


def test_a_connector_record_below_flytekits_level_is_dropped(flytekit_handler):
    flytekit_logger.setLevel(logging.CRITICAL)  # `pyflyte serve connector` without FLYTE_SDK_LOGGING_LEVEL
    logging.getLogger("cdao_connectors._status_cache").warning("background refresh failed")
    assert flytekit_handler.records == []
