"""The batch scheduler: units of many jobs share generate calls on the real (tiny) model; failures stay per job;
short jobs are not stuck behind long ones; and, through real worker processes on real Redis, many jobs in flight
per worker, live ``segment`` events, and a SIGTERM that hands every job back to the queue at once."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from services import RedisServer
from stack import WorkerProcess, stack_env
from test_worker import Harness

from shared.errors import EngineOutOfMemory
from shared.jobs import JobStatus, events_key
from shared.priority import Priority
from shared.tasks import Task
from shared.workers import WorkerRegistry
from worker.engine import DecodingOptions, FaultInjection, TextItem, TranslationEngine
from worker.scheduler import BatchScheduler, JobUnits, SchedulerOptions, Unit

SENTENCES = [
    ("Bonjour tout le monde.", "fra", "eng"),
    ("Hello world, how are you today?", "eng", "deu"),
    ("Guten Tag, wie geht es?", "deu", "spa"),
    ("Hola amigos mios, que tal.", "spa", "fra"),
]


@pytest.fixture(scope="module")
def engine(tiny_model_dir: Path) -> TranslationEngine:
    return TranslationEngine.load(
        str(tiny_model_dir), device="cpu", decoding=DecodingOptions(text_num_beams=1, max_len_b=20)
    )


def text_unit(index: int, text: str, src: str) -> Unit:
    return Unit(index, len(text.split()) + 2, lambda: TextItem(text, src))


def collect(job: JobUnits, count: int, timeout_s: float = 60) -> dict[int, str]:
    found: dict[int, str] = {}
    deadline = time.monotonic() + timeout_s
    while len(found) < count:
        assert time.monotonic() < deadline, f"only {len(found)} of {count} results"
        found.update({i: r.text for i, r in job.wait(0.2).items()})
    return found


def test_units_of_many_jobs_share_calls_and_mixed_target_languages_match_single_calls(
    engine: TranslationEngine,
) -> None:
    alone = [engine.translate(Task.T2TT, [TextItem(t, s)], tgt_lang=g)[0].text for t, s, g in SENTENCES]
    scheduler = BatchScheduler(engine, SchedulerOptions(batch_size=8, wait_s=0.5))
    jobs = [scheduler.open_job(f"job{i}", task=Task.T2TT, tgt_lang=g) for i, (_, _, g) in enumerate(SENTENCES)]
    for job, (text, src, _) in zip(jobs, SENTENCES, strict=True):
        job.submit([text_unit(0, text, src)])
    with scheduler:
        together = [collect(job, 1)[0] for job in jobs]
        stats = scheduler.stats()
    assert together == alone  # one call, four target languages, the outputs of four separate calls
    assert stats.calls_last_minute == 1 and stats.mean_batch_items == 4


def test_out_of_memory_fails_only_the_job_whose_unit_fails_alone(tiny_model_dir: Path) -> None:
    engine = TranslationEngine.load(
        str(tiny_model_dir),
        device="cpu",
        decoding=DecodingOptions(text_num_beams=1, max_len_b=10),
        faults=FaultInjection(oom_marker="OOM!"),
    )
    scheduler = BatchScheduler(engine, SchedulerOptions(batch_size=8, wait_s=0.5))
    healthy = scheduler.open_job("healthy", task=Task.T2TT, tgt_lang="eng")
    doomed = scheduler.open_job("doomed", task=Task.T2TT, tgt_lang="eng")
    healthy.submit([text_unit(i, f"Phrase numero {i}.", "fra") for i in range(3)])
    doomed.submit([text_unit(0, "Bonjour.", "fra"), text_unit(1, "Trop grand OOM! ici.", "fra")])
    with scheduler:
        assert sorted(collect(healthy, 3)) == [0, 1, 2]
        with pytest.raises(EngineOutOfMemory):
            collect(doomed, 2)


def test_a_short_job_is_not_stuck_behind_a_long_one(tiny_model_dir: Path) -> None:
    engine = TranslationEngine.load(
        str(tiny_model_dir),
        device="cpu",
        decoding=DecodingOptions(text_num_beams=1, max_len_b=5),
        faults=FaultInjection(slow_batch_s=0.05),
    )
    scheduler = BatchScheduler(engine, SchedulerOptions(batch_size=4, wait_s=0))
    with scheduler:
        long_job = scheduler.open_job("long", task=Task.T2TT, tgt_lang="eng")
        long_job.submit([text_unit(i, f"Phrase {i}.", "fra") for i in range(40)])
        time.sleep(0.1)
        short = scheduler.open_job("short", task=Task.T2TT, tgt_lang="eng", priority=Priority.LOW)
        short.submit([text_unit(0, "Vite.", "fra")])
        collect(short, 1)
        assert scheduler.stats().units_waiting >= 20  # the long job is still far from done
        long_job.close()
        assert scheduler.stats().units_waiting == 0  # closing (cancelling) a job drops its queued units at once


def test_a_job_that_arrives_during_a_call_goes_in_the_next_one(tiny_model_dir: Path) -> None:
    """Round-robin by who was served least recently: the long job was being served until its call ended, so the job
    that arrived meanwhile (another batch key, so no shared call) goes next, not after one more call of the long."""
    engine = TranslationEngine.load(
        str(tiny_model_dir),
        device="cpu",
        decoding=DecodingOptions(text_num_beams=1, max_len_b=5),
        faults=FaultInjection(slow_batch_s=0.4),
    )
    scheduler = BatchScheduler(engine, SchedulerOptions(batch_size=4, wait_s=0))
    with scheduler:
        long_job = scheduler.open_job("long", task=Task.T2TT, tgt_lang="eng")
        long_job.submit([text_unit(i, f"Phrase {i}.", "fra") for i in range(40)])
        deadline = time.monotonic() + 30
        while scheduler.stats().calls_last_minute < 1:  # the long job's second call is running
            assert time.monotonic() < deadline
            time.sleep(0.01)
        time.sleep(0.1)
        ended_before = scheduler.stats().calls_last_minute
        short = scheduler.open_job("short", task=Task.T2ST, tgt_lang="spa")
        short.submit([text_unit(0, "Vite.", "fra")])
        collect(short, 1)
        assert scheduler.stats().calls_last_minute == ended_before + 2  # the call running when it came, then its own
        long_job.close()


def calls_for_a_staggered_burst(tiny_model_dir: Path, wait_fraction: float) -> int:
    """Generate calls taken by six one-unit jobs that reach the scheduler 40 ms apart (as jobs sent together do,
    through HTTP, the broker and planning), after one call that tells the scheduler what a call costs (0.5 s)."""
    engine = TranslationEngine.load(
        str(tiny_model_dir),
        device="cpu",
        decoding=DecodingOptions(text_num_beams=1, max_len_b=5),
        faults=FaultInjection(slow_batch_s=0.5),
    )
    scheduler = BatchScheduler(engine, SchedulerOptions(batch_size=8, wait_s=0, wait_fraction=wait_fraction))
    with scheduler:
        first = scheduler.open_job("first", task=Task.T2TT, tgt_lang="eng")
        first.submit([text_unit(0, "Bonjour.", "fra")])
        collect(first, 1)
        before = scheduler.stats().calls_last_minute
        jobs = []
        for i in range(6):
            job = scheduler.open_job(f"burst{i}", task=Task.T2TT, tgt_lang="eng")
            job.submit([text_unit(0, f"Phrase numero {i}.", "fra")])
            jobs.append(job)
            time.sleep(0.04)
        for job in jobs:
            collect(job, 1)
        return scheduler.stats().calls_last_minute - before


def test_a_burst_that_arrives_over_a_spread_shares_one_call(tiny_model_dir: Path) -> None:
    """The fill window grows with what a call costs (a tenth of it by default): jobs that reach the scheduler a
    little apart share one call instead of the first ones starting a call that makes the rest wait a whole call."""
    assert calls_for_a_staggered_burst(tiny_model_dir, wait_fraction=0.6) == 1
    assert calls_for_a_staggered_burst(tiny_model_dir, wait_fraction=0) >= 2  # a fixed 0 ms window splits it


def test_no_fill_window_while_other_work_waits(tiny_model_dir: Path) -> None:
    """A call that is not full starts at once when units of another batch key are queued: the device never idles."""
    engine = TranslationEngine.load(
        str(tiny_model_dir),
        device="cpu",
        decoding=DecodingOptions(text_num_beams=1, max_len_b=5),
        faults=FaultInjection(slow_batch_s=0.2),
    )
    scheduler = BatchScheduler(engine, SchedulerOptions(batch_size=8, wait_s=5.0))
    text = scheduler.open_job("text", task=Task.T2TT, tgt_lang="eng")
    speech = scheduler.open_job("speech", task=Task.T2ST, tgt_lang="spa")
    text.submit([text_unit(0, "Bonjour.", "fra")])
    speech.submit([text_unit(0, "Vite.", "fra")])
    began = time.monotonic()
    with scheduler:
        first: dict[int, object] = {}
        while not first:
            assert time.monotonic() - began < 4, "the first call waited its fill window while other work was queued"
            first = {**text.wait(0.05), **speech.wait(0.05)}
        text.close()
        speech.close()


def test_a_high_job_goes_before_queued_normal_work(engine: TranslationEngine) -> None:
    scheduler = BatchScheduler(engine, SchedulerOptions(batch_size=2, wait_s=0))
    normal = [scheduler.open_job(f"n{i}", task=Task.T2TT, tgt_lang="eng") for i in range(6)]
    for job in normal:
        job.submit([text_unit(0, "Une phrase normale.", "fra")])
    high = scheduler.open_job("high", task=Task.T2TT, tgt_lang="eng", priority=Priority.HIGH)
    high.submit([text_unit(0, "Urgent.", "fra")])
    with scheduler:
        collect(high, 1)
        assert scheduler.stats().calls_last_minute == 1  # it was in the very first call


# -- real worker processes ---------------------------------------------------------------------------------------
@pytest.fixture
def redis_env(tmp_path: Path, tiny_model_dir: Path) -> Iterator[tuple[Harness, dict[str, str], Path]]:
    with RedisServer(tmp_path / "redis") as server:
        env = stack_env(
            redis_url=server.url,
            storage_url=f"file://{tmp_path / 'storage'}",
            model=tiny_model_dir,
            data_dir=tmp_path / "data",
        )
        yield Harness(server.url, tmp_path / "storage"), env, tmp_path


def test_sixteen_jobs_in_flight_share_generate_calls(redis_env: tuple[Harness, dict[str, str], Path]) -> None:
    harness, env, workdir = redis_env
    env = {**env, "M4T_FAULT_SLOW_BATCH_S": "1", "M4T_BATCH_SIZE": "16", "M4T_BATCH_WAIT_MS": "200"}
    with WorkerProcess(workdir, env) as worker:
        ids = [harness.submit(Task.T2TT, text=f"Phrase numero {i}. Et une autre.") for i in range(16)]
        records = [harness.wait(job_id, timeout_s=60) for job_id in ids]
        assert all(r.status is JobStatus.SUCCEEDED for r in records), [r.error for r in records]
        # 16 jobs in a few 1-second calls, not 16 of them (the heartbeat comes every half second)
        deadline = time.monotonic() + 5
        while True:
            beat = next(b for b in WorkerRegistry(harness.redis).alive() if b.name == worker.worker_name)
            if beat.mean_batch_items is not None or time.monotonic() > deadline:
                break
            time.sleep(0.1)
        assert beat.mean_batch_items is not None and beat.mean_batch_items >= 4
        events = harness.redis.xrange(events_key(ids[0]))
        segments = [f for _, f in events if f["event"] == "segment"]  # type: ignore[index]
        assert len(segments) == records[0].progress_total >= 1  # one per chunk, in order
        assert all(f'"index": {i}' in s["data"] for i, s in enumerate(segments))  # type: ignore[index]


def test_sigterm_hands_every_job_back_at_once_and_another_worker_finishes_them(
    redis_env: tuple[Harness, dict[str, str], Path],
) -> None:
    harness, env, workdir = redis_env
    slow = {**env, "M4T_FAULT_SLOW_BATCH_S": "2", "M4T_BATCH_SIZE": "2", "M4T_SHUTDOWN_GRACE_S": "10"}
    text = " ".join(f"Phrase numero {i} du document." for i in range(12))
    first = WorkerProcess(workdir, {**slow, "M4T_TEXT_CHUNK_TOKENS": "16"}, worker_name="first")
    first.__enter__()
    try:
        ids = [harness.submit(Task.T2TT, text=text) for _ in range(6)]
        deadline = time.monotonic() + 30
        while not all((r := harness.store.get(i)) and r.status is JobStatus.RUNNING for i in ids):
            assert time.monotonic() < deadline, "the worker never held all six jobs"
            time.sleep(0.1)
        assert first.pid is not None
        began = time.monotonic()
        os.kill(first.pid, signal.SIGTERM)
        while first.running and time.monotonic() - began < 15:
            time.sleep(0.05)
        stopped_s = time.monotonic() - began
    finally:
        first.__exit__(None, None, None)
    assert stopped_s < 10  # within M4T_SHUTDOWN_GRACE_S
    for job_id in ids:
        record = harness.store.get(job_id)
        assert record is not None and record.status is JobStatus.QUEUED and record.attempts == 0
    with WorkerProcess(workdir, env, worker_name="second"):
        for job_id in ids:
            record = harness.wait(job_id, timeout_s=90)
            assert record.status is JobStatus.SUCCEEDED, record.error
            assert record.attempts == 1 and record.worker == "second"
            assert len(harness.terminal_events(job_id)) == 1


def test_kill_9_of_a_worker_holding_sixteen_jobs_then_a_restart_finishes_each_once(
    redis_env: tuple[Harness, dict[str, str], Path],
) -> None:
    harness, env, workdir = redis_env
    slow = {**env, "M4T_FAULT_SLOW_BATCH_S": "2", "M4T_BATCH_SIZE": "4"}
    doomed = WorkerProcess(workdir, slow, worker_name="doomed")
    doomed.__enter__()
    try:
        ids = [harness.submit(Task.T2TT, text=f"Phrase numero {i}.") for i in range(16)]
        deadline = time.monotonic() + 30
        while not all((r := harness.store.get(i)) and r.status is JobStatus.RUNNING for i in ids):
            assert time.monotonic() < deadline, "the worker never held all sixteen jobs"
            time.sleep(0.1)
        assert doomed.pid is not None
        os.kill(doomed.pid, signal.SIGKILL)
    finally:
        doomed.__exit__(None, None, None)
    with WorkerProcess(workdir, env, worker_name="restarted"):
        for job_id in ids:
            record = harness.wait(job_id, timeout_s=90)
            assert record.status is JobStatus.SUCCEEDED, record.error
            assert record.worker == "restarted"
            assert len(harness.terminal_events(job_id)) == 1
