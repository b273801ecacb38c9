"""What the benchmarks' own process costs a measurement, and how they call a service: shared by
``get_task_latency.py`` and ``batch_polling.py`` (run from this folder, which Python puts first on
``sys.path``)."""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import Awaitable, Callable, Sequence
from typing import Any, TypeVar

T = TypeVar("T")


async def closed_loop(calls: Sequence[Callable[[], Awaitable[T]]], callers: int) -> list[T]:
    """Every call of ``calls``, ``callers`` at a time, each caller starting the next as soon as its
    last one answered; the results in ``calls``' order."""
    results: list[Any] = [None] * len(calls)
    indexes = iter(range(len(calls)))

    async def caller() -> None:
        for i in indexes:
            results[i] = await calls[i]()

    await asyncio.gather(*(caller() for _ in range(callers)))
    return results


class LoopLag:
    """How late this process's event loop runs a timer: a coroutine that sleeps ``interval`` seconds
    again and again and records each wake-up's lateness. A GetTask's answer reaches its worker no
    sooner than the loop gets to it, so lateness here is harness queueing in the measured latency,
    not service time."""

    def __init__(self, interval: float = 0.01) -> None:
        self.interval = interval
        self.samples: list[tuple[float, float]] = []  # (when, seconds late)
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            before = time.monotonic()
            await asyncio.sleep(self.interval)
            now = time.monotonic()
            self.samples.append((now, max(0.0, now - before - self.interval)))

    def start(self) -> LoopLag:
        self._task = asyncio.get_running_loop().create_task(self._run())
        return self

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)

    def between(self, start: float, end: float) -> list[float]:
        return [late for when, late in self.samples if start <= when <= end]


class GcPauses:
    """This process's garbage collections (``gc.callbacks``,
    https://docs.python.org/3/library/gc.html#gc.callbacks): when each ended and how long it stopped
    the interpreter, the event loop included."""

    def __init__(self) -> None:
        self.pauses: list[tuple[float, float]] = []  # (when it ended, seconds)
        self._started = 0.0

    def _note(self, phase: str, info: dict[str, Any]) -> None:
        now = time.monotonic()
        if phase == "start":
            self._started = now
        else:
            self.pauses.append((now, now - self._started))

    def start(self) -> GcPauses:
        gc.callbacks.append(self._note)
        return self

    def stop(self) -> None:
        gc.callbacks.remove(self._note)

    def between(self, start: float, end: float) -> list[float]:
        return [took for when, took in self.pauses if start <= when <= end]


class Harness:
    """What this process itself costs the measurement: its event loop's lag and its GC pauses."""

    def __init__(self) -> None:
        self.lag = LoopLag()
        self.gc = GcPauses()

    def start(self) -> Harness:
        self.lag.start()
        self.gc.start()
        return self

    @staticmethod
    def freeze_setup() -> None:
        """Takes what set-up made (imports, clients, with moto in this process its models) out of the
        garbage collector's scans for the rest of the process (never unfrozen: a test running the
        benchmark in-process shares the connector service module's own freeze): a full collection
        over it stopped the event loop for 0.4-0.5 s on these machines, a harness stall in the
        measured tail (propeller's Go GC runs concurrently). ``gc.freeze``: https://docs.python.org/3/library/gc.html#gc.freeze"""
        gc.collect()
        gc.freeze()

    async def stop(self) -> None:
        self.gc.stop()
        await self.lag.stop()
