"""The service's GetTask latency, for an SLO: a Prometheus histogram by task type.

Exported on the service's Prometheus port (``pyflyte serve connector --prometheus_port``), with
flytekit's own ``flyte_connector_*`` metrics. flytekit times each request too
(``flytekit/extend/backend/connector_service.py``, ``request_latency``), but as a ``Summary``, which
prometheus_client exports with a count and a sum only: no quantile can be had from it, and averages
hide the tail an SLO is about. A histogram's buckets can be summed over replicas and turned into
quantiles (PromQL ``histogram_quantile``); plugins/benchmarks/get_task_latency.py does the same.
"""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import Histogram

from cdao_connectors import _deadlines

T = TypeVar("T")

GET_TASK_SECONDS_NAME = "cdao_get_task_seconds"
# From a cache hit (about a millisecond) through the 100 ms p99 target (issue #16) to the
# connectors' own GetTask budget (_deadlines.GET_TASK_SECONDS, 10 s; propeller's deadline is the
# 30 s defaultTimeout), past which a GetTask has answered its retryable error (+Inf).
GET_TASK_BUCKETS = (
    0.001,
    0.0025,
    0.005,
    0.01,
    0.025,
    0.05,
    0.075,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    _deadlines.GET_TASK_SECONDS,
)
GET_TASK_SECONDS = Histogram(
    GET_TASK_SECONDS_NAME,
    "Seconds a connector took to answer a GetTask (errors and deadline-exceeded answers included), by task type",
    ["task_type"],
    buckets=GET_TASK_BUCKETS,
)


def observe_get_task(get: Callable[..., Awaitable[T]]) -> Callable[..., Awaitable[T]]:
    """Decorates a connector's ``async get(self, resource_meta, **kwargs)``: each call is observed in
    :data:`GET_TASK_SECONDS` under the connector's task type (``self.task_category.name``, the one
    the GetTask named), however it ends."""

    @functools.wraps(get)
    async def observed(self: Any, *args: Any, **kwargs: Any) -> T:
        with GET_TASK_SECONDS.labels(task_type=self.task_category.name).time():
            return await get(self, *args, **kwargs)

    return observed
