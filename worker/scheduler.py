"""The batch scheduler: the only code that calls the model. Every job in flight hands it its units (text chunks,
speech segments); it builds each generate call from units of ANY job that can share one, and sends each result
back to its job.

What shares a call (``BatchKey``): one task, one speaker for speech output, and one target language for speech
output (the vocoder takes one of each); text output mixes target languages (one language token per row).

Which units go next:
- the lead job is the most urgent: priority first (high, normal, low), then the one served least recently
  (round-robin across jobs and so across batch keys); a job gains one priority level per ``ageing_s`` waited, so
  a low or long job always moves;
- the call is filled from the jobs that share the lead's key, one unit from each in turn, and no job takes more
  than ``job_share`` of the call while another job's units wait for it;
- up to ``batch_size`` units and a size budget (``max_tokens`` for text input: items x longest; ``max_audio_s``
  for speech input), so a call of long segments cannot exhaust device memory;
- no waiting while a full call is queued; a call that is not full (fewer than ``batch_size`` units and room in
  its budget) waits a fill window for units that arrive meanwhile: ``wait_s``, or ``wait_fraction`` of the
  recent duration of a call of that key when that is longer (never while units of another key wait). Jobs
  submitted together reach the scheduler over tens to hundreds of milliseconds (HTTP, the broker, planning): a
  call that starts with the first few of them makes the rest wait a whole call, which costs far more than the
  window (a tenth of a call, by default). A job alone pays the window once per call: set ``wait_fraction`` to 0
  where the latency of a lone job matters more than throughput.

Failures stay per job: a call that fails is split in halves down to single units, and only a unit that fails
alone fails its job. Cancelling a job drops its queued units at once.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

from shared.errors import EngineOutOfMemory, InferenceFailed, M4TError
from shared.priority import Priority
from shared.tasks import Task
from worker.engine import Item, ItemResult, TranslationEngine

log = logging.getLogger(__name__)

STATS_WINDOW_S = 60.0


@dataclass(frozen=True)
class SchedulerOptions:
    batch_size: int = 8
    max_tokens: int = 2048
    max_audio_s: float = 160.0
    wait_s: float = 0.005
    wait_fraction: float = 0.1
    job_share: float = 0.5
    ageing_s: float = 30.0


@dataclass(frozen=True)
class BatchKey:
    """Units with equal keys may share a generate call."""

    task: Task
    tgt_lang: str | None
    """Speech output: the one target language of the call; None for text output (mixed languages)."""

    speaker_id: int | None

    @classmethod
    def of(cls, task: Task, tgt_lang: str, speaker_id: int | None) -> BatchKey:
        if task.speech_output:
            return cls(task, tgt_lang, speaker_id)
        return cls(task, None, None)


@dataclass
class Unit:
    """One item of a job: made only when its call comes (so long audio is never all in memory)."""

    index: int
    size: float
    """Tokens for text input, seconds for speech input: what the size budget counts."""

    make_item: Callable[[], Item]
    queued_at: float = 0.0


class JobClosed(Exception):
    """The job's units were dropped (cancelled, handed back or failed): no more results will come."""


class JobUnits:
    """One job's side of the scheduler: it submits units and collects their results, in any order."""

    def __init__(self, scheduler: BatchScheduler, job_id: str, key: BatchKey, tgt_lang: str, priority: Priority):
        self.job_id = job_id
        self.key = key
        self.tgt_lang = tgt_lang
        self.priority = priority
        self._scheduler = scheduler
        self.pending: deque[Unit] = deque()
        self.results: dict[int, ItemResult] = {}
        self.error: M4TError | None = None
        self.closed = False
        self.opened_at = scheduler.clock()
        self.served_at: float | None = None
        self.in_flight = 0
        self.engine_s = 0.0
        """This job's share of the device time of the calls its units were in (seconds)."""

    def submit(self, units: Sequence[Unit]) -> None:
        self._scheduler._submit(self, units)

    def wait(self, timeout: float) -> dict[int, ItemResult]:
        """Results that arrived since the last call (waits up to ``timeout`` for one). Raises the job's error when
        one of its units failed alone, ``JobClosed`` when the job was closed."""
        return self._scheduler._take_results(self, timeout)

    def close(self) -> None:
        """Drop every queued unit of this job; results of units on the device are discarded."""
        self._scheduler._close(self)


@dataclass
class SchedulerStats:
    jobs: int
    units_waiting: int
    mean_batch_items: float | None
    """Mean items per generate call over the last minute (None when there was no call)."""

    calls_last_minute: int


@dataclass
class _Call:
    key: BatchKey
    units: list[tuple[JobUnits, Unit]] = field(default_factory=list)
    budget_bound: bool = False
    """A unit was left out for the size budget: the call cannot grow."""


class BatchScheduler:
    def __init__(
        self,
        engine: TranslationEngine,
        options: SchedulerOptions,
        *,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.engine = engine
        self.options = options
        self.clock = clock
        self._cond = threading.Condition()
        self._jobs: list[JobUnits] = []
        self._stopping = False
        self._calls: deque[tuple[float, int]] = deque()
        self._call_s: dict[BatchKey, float] = {}
        """Recent duration of a generate call, per key (an exponential moving average)."""
        self._thread = threading.Thread(target=self._loop, name="batch-scheduler", daemon=True)
        self._idle = threading.Event()
        self._idle.set()

    # -- lifecycle ---------------------------------------------------------------------------------------------
    def start(self) -> BatchScheduler:
        self._thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        """Finish the call on the device, then stop; queued units are left (their jobs are handed back)."""
        with self._cond:
            self._stopping = True
            self._cond.notify_all()
        if self._thread.is_alive():
            self._thread.join(timeout)

    def __enter__(self) -> BatchScheduler:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- jobs --------------------------------------------------------------------------------------------------
    def open_job(
        self,
        job_id: str,
        *,
        task: Task,
        tgt_lang: str,
        speaker_id: int | None = None,
        priority: Priority = Priority.NORMAL,
    ) -> JobUnits:
        job = JobUnits(self, job_id, BatchKey.of(task, tgt_lang, speaker_id), tgt_lang, priority)
        with self._cond:
            self._jobs.append(job)
        return job

    def _submit(self, job: JobUnits, units: Sequence[Unit]) -> None:
        now = self.clock()
        with self._cond:
            if job.closed:
                raise JobClosed()
            for unit in units:
                unit.queued_at = now
                job.pending.append(unit)
            self._cond.notify_all()

    def _take_results(self, job: JobUnits, timeout: float) -> dict[int, ItemResult]:
        with self._cond:
            if not job.results and job.error is None and not job.closed:
                self._cond.wait(timeout)
            if job.error is not None:
                raise job.error
            if job.closed:
                raise JobClosed()
            taken, job.results = job.results, {}
            return taken

    def _close(self, job: JobUnits) -> None:
        with self._cond:
            job.closed = True
            job.pending.clear()
            if job in self._jobs:
                self._jobs.remove(job)
            self._cond.notify_all()

    def stats(self) -> SchedulerStats:
        now = self.clock()
        with self._cond:
            while self._calls and self._calls[0][0] < now - STATS_WINDOW_S:
                self._calls.popleft()
            sizes = [n for _, n in self._calls]
            return SchedulerStats(
                jobs=len(self._jobs),
                units_waiting=sum(len(j.pending) for j in self._jobs),
                mean_batch_items=round(sum(sizes) / len(sizes), 2) if sizes else None,
                calls_last_minute=len(sizes),
            )

    # -- the loop ----------------------------------------------------------------------------------------------
    def _loop(self) -> None:
        while True:
            with self._cond:
                call = self._next_call_locked()
                if call is None:
                    return
            self._run(call)

    def _next_call_locked(self) -> _Call | None:
        """Wait for work and take the next call's units out of the queues (None: stopping)."""
        while True:
            if self._stopping:
                return None
            call = self._plan(self.clock())
            if call is None:
                self._cond.wait()
                continue
            # the device never idles in a fill window while other work is queued
            other_work = any(job.pending and job.key != call.key for job in self._jobs)
            full = len(call.units) >= self.options.batch_size or call.budget_bound or other_work
            waited = self.clock() - min(unit.queued_at for _, unit in call.units)
            window = self.fill_window(call.key)
            if not full and waited < window:
                self._cond.wait(window - waited)
                continue
            now = self.clock()
            for job, unit in call.units:
                job.pending.remove(unit)
                job.in_flight += 1
                job.served_at = now
            return call

    def fill_window(self, key: BatchKey) -> float:
        """How long a call that is not full waits for more units (seconds)."""
        return max(self.options.wait_s, self.options.wait_fraction * self._call_s.get(key, 0.0))

    def _urgency(self, job: JobUnits, now: float) -> tuple[float, float]:
        """Lower is sooner: the priority rank less one level per ``ageing_s`` waited since the job was last
        served (or since its first unit was queued), then the longest waiting first."""
        since = job.served_at if job.served_at is not None else job.pending[0].queued_at
        return (job.priority.rank - max(0.0, now - since) / self.options.ageing_s, since)

    def _plan(self, now: float) -> _Call | None:
        ready = [job for job in self._jobs if job.pending]
        if not ready:
            return None
        ready.sort(key=lambda job: self._urgency(job, now))
        key = ready[0].key
        peers = [job for job in ready if job.key == key]
        call = _Call(key)
        taken = {id(job): 0 for job in peers}
        cap = max(1, int(self.options.batch_size * self.options.job_share))
        speech = key.task.speech_input
        budget = self.options.max_audio_s if speech else float(self.options.max_tokens)
        longest = 0.0
        while len(call.units) < self.options.batch_size:
            progressed = False
            for job in peers:
                if len(call.units) >= self.options.batch_size:
                    break
                if taken[id(job)] >= len(job.pending):
                    continue
                others_waiting = any(taken[id(other)] < len(other.pending) for other in peers if other is not job)
                if others_waiting and taken[id(job)] >= cap:
                    continue
                unit = job.pending[taken[id(job)]]
                grown = max(longest, unit.size)
                if call.units and grown * (len(call.units) + 1) > budget:
                    call.budget_bound = True
                    continue
                call.units.append((job, unit))
                taken[id(job)] += 1
                longest = grown
                progressed = True
            if not progressed:
                break
        return call

    def _run(self, call: _Call) -> None:
        self._idle.clear()
        began = self.clock()
        try:
            self._run_units(call.key, call.units)
        finally:
            with self._cond:
                ended = self.clock()
                previous = self._call_s.get(call.key)
                took = ended - began
                self._call_s[call.key] = took if previous is None else 0.7 * previous + 0.3 * took
                for job, _ in call.units:
                    job.in_flight -= 1
                    # served until the call ended: a job that arrived during it has waited longer, and goes first
                    job.served_at = ended
                self._calls.append((ended, len(call.units)))
                self._cond.notify_all()
            self._idle.set()

    def _run_units(self, key: BatchKey, units: list[tuple[JobUnits, Unit]]) -> None:
        live = [(job, unit) for job, unit in units if not job.closed]
        if not live:
            return
        items: list[Item] = []
        made: list[tuple[JobUnits, Unit]] = []
        for job, unit in live:
            try:
                items.append(unit.make_item())
                made.append((job, unit))
            except M4TError as exc:
                self._fail(job, exc)
            except Exception:
                log.exception("job %s: could not read unit %d", job.job_id, unit.index)
                self._fail(job, InferenceFailed("the job's input could not be read"))
        if made:
            self._translate(key, made, items)

    def _translate(self, key: BatchKey, units: list[tuple[JobUnits, Unit]], items: list[Item]) -> None:
        langs = [job.tgt_lang for job, _ in units]
        began = time.perf_counter()
        try:
            results = self.engine.translate(
                key.task, items, tgt_lang=langs if key.tgt_lang is None else key.tgt_lang, speaker_id=key.speaker_id
            )
        except M4TError as exc:
            if isinstance(exc, EngineOutOfMemory):
                self.engine.release_cached_memory()
            if len(units) == 1:
                self._fail(units[0][0], exc)
                return
            log.warning("%s on a call of %d units: splitting the batch", exc.code, len(units))
            half = len(units) // 2
            self._translate(key, units[:half], items[:half])
            self._translate(key, units[half:], items[half:])
            return
        took = time.perf_counter() - began
        log.debug(
            "call of %d units (%s, %d jobs): %.3f s", len(units), key.task.value, len({id(j) for j, _ in units}), took
        )
        share = took / len(units)
        with self._cond:
            for (job, unit), result in zip(units, results, strict=True):
                job.engine_s += share
                if not job.closed:
                    job.results[unit.index] = result
            self._cond.notify_all()

    def _fail(self, job: JobUnits, error: M4TError) -> None:
        with self._cond:
            if job.error is None:
                job.error = error
            job.pending.clear()
            self._cond.notify_all()

    def wait_idle(self, timeout: float) -> bool:
        """True once no call is on the device (for shutdown)."""
        return self._idle.wait(timeout)
