"""Each replica's sweeper: stops the jobs whose task attempt nobody follows any more.

The attempt table keeps every attempt whose job may be running with nobody to stop it in its sweep
index, due when the replica that made the job can no longer be counted on to stop it
(:mod:`cdao_connectors._attempts`, "Sweeping"). Every connector replica sweeps: every
``CDAO_SWEEP_PERIOD_SECONDS`` (:func:`cdao_connectors.config.sweep_period_seconds`) it takes up to
:data:`SWEEP_BATCH` due attempts, claims each (one replica does, held for
:data:`SWEEP_HOLD_SECONDS`), finds its job through the connector that made it and stops it through
that connector's DeleteTask path. A job found stopped is logged and counted
(``cdao_jobs_swept_total``); one its backend keeps refusing to stop for
:data:`SWEEP_GIVE_UP_SECONDS`, or refuses for good, is logged and counted as left running
(``cdao_jobs_left_running_total``, alert ``ConnectorJobLeftRunning``) by this surviving replica,
whose counters Prometheus scrapes, unlike those of a replica that is ending.

The index also holds the jobs whose abort (propeller's DeleteTask) failed
(:func:`cdao_connectors._backends.aborting`): propeller stops re-sending it after its abort's
retries, and the sweep goes on cancelling the job through the same DeleteTask path.

It runs on a thread of its own, with an event loop of its own for the connectors' async DeleteTask:
its AWS calls and its waits never hold the service's event loop, and the service's shutdown
(:func:`cdao_connectors._backends.finish_shutdown`) has nothing of it to wait for: an attempt a
sweeper claimed and did not settle is due again once the claim's hold ends.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from dataclasses import dataclass
from typing import Any

from flytekit.extend.backend.base_connector import ConnectorRegistry

from cdao_connectors._attempts import (
    SWEEP_FIND_SECONDS,
    SWEEP_RECHECK_SECONDS,
    AttemptLedger,
    JobCannotBeFound,
    SweepTarget,
)
from cdao_connectors._backends import NOT_AN_RPC, Backend, aws_error_is_transient
from cdao_connectors._common import in_chain
from cdao_connectors._metrics import count_job_left_running, count_job_swept, count_sweep_failure, exported_backend
from cdao_connectors.config import ConnectorConfigError, attempt_table, aws_region, sweep_period_seconds

_log = logging.getLogger(__name__)

# Due attempts one pass takes; the rest wait for the next pass (or another replica's).
SWEEP_BATCH = 25
# A claimed attempt is due again this long after its claim, should its sweeper end first: far more
# than finding and stopping one job (each call bounded by propeller's DeleteTask deadline).
SWEEP_HOLD_SECONDS = 120.0
# A job whose backend refuses to stop it "for now" (throttled, a 5xx) is tried again every pass
# for this long after its attempt entered the index, then counted as left running. For a job
# whose abort's DeleteTask failed (_backends.aborting) that is from the first failure: propeller
# re-sends that DeleteTask for 3275 s (about 55 minutes) with values.yaml's max-workflow-retries and
# backoff (tests/plugins/test_error_budget.py checks this outlasts it), so "not now" is counted
# only once propeller has stopped trying too (its slowest rounds, each waiting out a DeleteTask
# deadline, may go on some minutes more: an hour of refusals is worth an operator's look anyway).
SWEEP_GIVE_UP_SECONDS = 3600.0


@dataclass(frozen=True)
class Swept:
    """What one sweep of ``attempt`` did: ``outcome`` is "cancelled", "no job", "not found yet",
    "retrying", "left running", "answered" (left alone: propeller follows it) or "another attempt's"
    (the connector's DeleteTask found the job taken over by a later attempt, after the sweep found
    it, and left it); ``job`` the ``resource_meta`` it stopped or tried to, if found."""

    attempt: str
    outcome: str
    job: Any = None


def sweep_once(ledger: AttemptLedger) -> list[Swept]:
    """One pass: every attempt due now (at most :data:`SWEEP_BATCH`) that this call claims is swept.
    Raises what reading the index raises (the next pass tries again); an attempt's own failure is
    logged and leaves it due again when its claim's hold ends."""
    done = []
    for attempt in ledger.due(SWEEP_BATCH):
        item = ledger.claim_for_sweep(attempt, SWEEP_HOLD_SECONDS)
        if item is None:
            # Another replica claimed it, or it was answered or settled meanwhile; one answered but
            # left in the index (by an earlier version's answer) leaves it now.
            if ledger.disarm_answered(attempt):
                done.append(Swept(attempt, "answered"))
            continue
        now = ledger.now()
        try:
            done.append(_sweep(ledger, attempt, item, now))
        except Exception as exc:
            # Its connector not served here (a replica of another version), a malformed item, an
            # AWS call failing: due again when the hold ends, for SWEEP_GIVE_UP_SECONDS at most.
            since = float(item.get("sweep_since", {}).get("N", now))
            if now - since < SWEEP_GIVE_UP_SECONDS:
                count_sweep_failure("attempt")
                _log.exception("sweeper: could not sweep attempt %s; due again in %.0fs", attempt, SWEEP_HOLD_SECONDS)
                continue
            done.append(_left_running(ledger, attempt, item, None, exc))
    return done


def _left_running(ledger: AttemptLedger, attempt: str, item: dict[str, Any], job: Any, error: Exception) -> Swept:
    """The sweep gives ``attempt``'s job up: counted and logged for an operator, and settled."""
    backend = item.get("sweep_backend", {}).get("S", "unknown")
    count_job_left_running(exported_backend(backend))  # the log names it as the item does
    _log.error(
        "sweeper: could not stop %r, the job of attempt %s that nobody follows (%s: %s); "
        "it must be stopped by hand (plugins/README.md, 'Jobs nobody follows')",
        job if job is not None else item.get("sweep_lookup", {}).get("S", "its job"),
        attempt,
        backend,
        error,
    )
    ledger.settle(attempt, f"left running: {error}"[:1024])
    return Swept(attempt, "left running", job)


def _sweep(ledger: AttemptLedger, attempt: str, item: dict[str, Any], now: float) -> Swept:
    target = SweepTarget.of(item)
    since = float(item.get("sweep_since", {}).get("N", now))
    connector = ConnectorRegistry.get_connector(target.task_type, target.task_version)
    try:
        job = _job(connector, target, item)
    except JobCannotBeFound as unknown:
        return _left_running(ledger, attempt, item, None, unknown)
    if job is None:
        if not target.never_sent and now - since < SWEEP_FIND_SECONDS:
            ledger.sweep_later(attempt, now + SWEEP_RECHECK_SECONDS)
            return Swept(attempt, "not found yet")
        ledger.settle(attempt, "no job")
        _log.info("sweeper: %s never made the job of attempt %s (%s)", target.backend, attempt, target.lookup)
        return Swept(attempt, "no job")
    try:
        stopped = asyncio.run(_stop(connector, job))
    except Exception as exc:
        transient = getattr(connector, "is_transient_error", aws_error_is_transient)
        if in_chain(exc, transient, implicit=False) and now - since < SWEEP_GIVE_UP_SECONDS:
            _log.warning("sweeper: %s refused to stop %r for now (%s); trying again", target.backend, job, exc)
            ledger.sweep_later(attempt, now + SWEEP_RECHECK_SECONDS)
            return Swept(attempt, "retrying", job)
        return _left_running(ledger, attempt, item, job, exc)
    return _settle_stopped(ledger, attempt, target, job, stopped=stopped is not False)


def _settle_stopped(ledger: AttemptLedger, attempt: str, target: SweepTarget, job: Any, *, stopped: bool) -> Swept:
    """Settles ``attempt`` once its connector's DeleteTask of ``job`` returned: it ``stopped`` the
    job, or left it to the later attempt that took it over (not counted as stopped: it runs on)."""
    if not stopped:
        ledger.settle(attempt, "another attempt's")
        _log.info("sweeper: left %r, the job of attempt %s, which another attempt took over", job, attempt)
        return Swept(attempt, "another attempt's", job)
    ledger.settle(attempt, "cancelled")
    count_job_swept(exported_backend(target.backend))
    _log.warning(
        # Its CreateTask could not answer it, or propeller's abort of it failed (_backends.aborting).
        "sweeper: stopped %r, the job of attempt %s, which nobody follows any more (%s)",
        job,
        attempt,
        target.backend,
    )
    return Swept(attempt, "cancelled", job)


async def _stop(connector: Any, job: Any) -> Any:
    """The connector's DeleteTask of ``job``, run on this thread's own event loop: not an RPC the
    service's shutdown waits for (``_backends.NOT_AN_RPC``). What it returns: False when it left a
    job that is not the attempt's (``sagemaker._plugin_clients`` ``BulkheadPluginConnector.delete``),
    else what the plugin's delete returns (None)."""
    NOT_AN_RPC.set(True)
    return await connector.delete(job)


def _job(connector: Any, target: SweepTarget, item: dict[str, Any]) -> Any:
    """The job's ``resource_meta``: the one recorded with the target, else the one the connector's
    ``swept_job`` finds from the target's lookup and the job the claim recorded, if any (None: not
    made, or not listed yet; none is looked for when the create sent no request,
    :attr:`SweepTarget.never_sent`). Raises :class:`JobCannotBeFound` for a connector with no
    ``swept_job``, or from one that cannot find the job from this lookup."""
    if target.resource_meta is not None:
        return connector.metadata_type.decode(target.resource_meta)
    if target.never_sent:
        return None
    swept_job = getattr(connector, "swept_job", None)
    if swept_job is None:
        raise JobCannotBeFound(
            f"{target.backend} cannot look a job up by its attempt; a create of it ended without an answer "
            f"(its replica ended, or AWS's answer was lost), and may have made one: look for it as "
            f"plugins/README.md 'Jobs nobody follows' says, by its attempt {target.lookup}"
        )
    recorded = item.get("resource", {}).get("S")
    return swept_job(target.lookup, json.loads(recorded) if recorded else None)


_started = threading.Lock()
_thread: threading.Thread | None = None


def start_sweeping() -> threading.Thread:
    """Starts this process's sweeper thread, once (a daemon: it ends with the process). Each pass
    reads its settings afresh; with no attempt table configured, or a period of 0, it does nothing."""
    global _thread  # noqa: PLW0603  (one sweeper per process)
    with _started:
        if _thread is None:
            _thread = threading.Thread(target=_sweep_forever, name="cdao-sweeper", daemon=True)
            _thread.start()
        return _thread


def _period() -> float:
    try:
        return sweep_period_seconds()
    except ConnectorConfigError:
        _log.exception("sweeper: not sweeping until the setting is fixed")
        return 0.0


# The sweeper's own DynamoDB client, shared by its passes (one adaptive rate limiter, not one a pass)
# and made again only for another endpoint (Backend.aws).
_CLIENTS = Backend("attempt sweeper", workers=1, makes_jobs=False)


def sweep_pass() -> None:
    """One pass of this replica's sweeper with its settings (the attempt table, the region); none
    without an attempt table. A failed pass is logged and counted (``cdao_sweep_failures_total``,
    stage "pass"), for the platform's alert: while passes fail, jobs nobody follows run on."""
    try:
        table = attempt_table()
    except ConnectorConfigError:
        return  # a service with no attempt table makes nothing to sweep
    try:
        sweep_once(AttemptLedger(_CLIENTS.aws("dynamodb", aws_region()), table))
    except Exception:
        count_sweep_failure("pass")
        _log.exception("sweeper: the pass failed; the next one tries again")


def _sweep_forever() -> None:
    # Replicas started together (a rollout) sweep at different moments of the period.
    time.sleep(random.uniform(0, _period() or SWEEP_RECHECK_SECONDS))  # noqa: S311  (not security)
    while True:
        period = _period()
        try:
            if period > 0:
                sweep_pass()
        except Exception:  # the thread must outlive any pass: a dead sweeper stops and counts nothing
            count_sweep_failure("pass")
            _log.exception("sweeper: the pass failed; the next one tries again")
        time.sleep(period or SWEEP_RECHECK_SECONDS)
