"""The job store against a real Redis: claims, leases, finishing, requeueing."""

from __future__ import annotations

import time

import pytest
import redis

from shared.errors import InvalidAudio
from shared.jobs import CancelOutcome, ClaimOutcome, JobRecord, JobStatus, JobStore, new_job_id
from shared.messages import JobMessage
from shared.reaper import requeue_orphaned_jobs
from shared.redis_client import sync_redis
from shared.tasks import Task


@pytest.fixture
def store(redis_url: str) -> JobStore:
    return JobStore(sync_redis(redis_url), result_ttl_s=3600)


def make_job(store: JobStore, **overrides: object) -> JobRecord:
    fields: dict[str, object] = {
        "id": new_job_id(),
        "task": Task.T2TT,
        "tgt_lang": "eng",
        "src_lang": "fra",
        "input_key": "jobs/x/input/text.txt",
    }
    fields.update(overrides)
    record = store.new_record(**fields)
    store.create(record)
    return record


def claim(store: JobStore, job_id: str, token: str, lease_s: float = 5.0, max_attempts: int = 3) -> ClaimOutcome:
    return store.claim(job_id, token=token, worker="w", lease_s=lease_s, max_attempts=max_attempts)


def test_record_round_trips(store: JobStore) -> None:
    record = make_job(store, speaker_id=3, output_format="flac", input_meta={"chars": 12}, speed=2.5)
    loaded = store.get(record.id)
    assert loaded is not None
    assert loaded.model_dump() == record.model_dump()
    assert loaded.to_message().speed == 2.5


def test_records_and_messages_from_before_speed_default_to_normal_speed(store: JobStore) -> None:
    record = make_job(store)
    old_hash = {k: v for k, v in record.to_hash().items() if k != "speed"}
    assert JobRecord.from_hash(old_hash).speed == 1.0
    old_message = {k: v for k, v in record.to_message().to_celery().items() if k != "speed"}
    assert JobMessage.from_celery(old_message).speed == 1.0


def test_unknown_job_is_none(store: JobStore) -> None:
    assert store.get(new_job_id()) is None
    assert claim(store, new_job_id(), "t") is ClaimOutcome.MISSING


def test_only_one_claim_wins_while_the_lease_lives(store: JobStore) -> None:
    job = make_job(store)
    assert claim(store, job.id, "a") is ClaimOutcome.CLAIMED
    assert claim(store, job.id, "b") is ClaimOutcome.BUSY
    running = store.get(job.id)
    assert running is not None
    assert running.status is JobStatus.RUNNING
    assert running.attempts == 1
    assert running.started_at is not None


def test_a_finished_job_is_never_run_again(store: JobStore) -> None:
    job = make_job(store)
    assert claim(store, job.id, "a") is ClaimOutcome.CLAIMED
    assert store.succeed(job.id, token="a", result={"text": "hello"})
    assert claim(store, job.id, "b") is ClaimOutcome.FINISHED
    done = store.get(job.id)
    assert done is not None
    assert done.status is JobStatus.SUCCEEDED
    assert done.result == {"text": "hello"}
    assert done.finished_at is not None


def test_only_the_lease_holder_can_finish(store: JobStore) -> None:
    job = make_job(store)
    claim(store, job.id, "a")
    assert not store.succeed(job.id, token="intruder", result={"text": "x"})
    assert store.fail(job.id, token="a", error=InvalidAudio("bad audio"))
    failed = store.get(job.id)
    assert failed is not None
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert (failed.error.code, failed.error.message) == ("invalid_audio", "bad audio")


def test_lease_renewal_keeps_the_job_and_a_lapsed_lease_lets_it_go(store: JobStore) -> None:
    job = make_job(store)
    claim(store, job.id, "a", lease_s=0.3)
    assert store.renew_lease(job.id, token="a", lease_s=0.3)
    assert not store.renew_lease(job.id, token="b", lease_s=0.3)
    time.sleep(0.45)
    assert not store.renew_lease(job.id, token="a", lease_s=0.3)
    assert claim(store, job.id, "b") is ClaimOutcome.CLAIMED


def test_reaper_requeues_only_jobs_whose_lease_lapsed(store: JobStore) -> None:
    alive = make_job(store)
    dead = make_job(store)
    claim(store, alive.id, "a", lease_s=30)
    claim(store, dead.id, "b", lease_s=0.2)
    time.sleep(0.35)
    sent: list[str] = []
    requeued = requeue_orphaned_jobs(store, lambda message: sent.append(message.job_id))
    assert requeued == [dead.id]
    assert sent == [dead.id]
    again = store.get(dead.id)
    assert again is not None
    assert again.status is JobStatus.QUEUED
    assert requeue_orphaned_jobs(store, lambda message: sent.append(message.job_id)) == []


def test_crash_loops_end_after_max_attempts(store: JobStore) -> None:
    job = make_job(store)
    for token in ("a", "b"):
        assert claim(store, job.id, token, lease_s=0.1, max_attempts=2) is ClaimOutcome.CLAIMED
        time.sleep(0.15)
    assert claim(store, job.id, "c", max_attempts=2) is ClaimOutcome.EXHAUSTED
    failed = store.get(job.id)
    assert failed is not None
    assert failed.status is JobStatus.FAILED
    assert failed.error is not None
    assert failed.error.code == "too_many_attempts"


def test_progress_and_status_changes_are_streamed(store: JobStore) -> None:
    job = make_job(store)
    claim(store, job.id, "a")
    assert store.set_progress(job.id, token="a", done=1, total=3)
    assert not store.set_progress(job.id, token="other", done=2, total=3)
    store.succeed(job.id, token="a", result={"text": ""})
    events = store.redis.xrange(f"m4t:job:{job.id}:events")
    kinds = [fields["event"] for _, fields in events]
    assert kinds == ["status", "status", "progress", "status"]
    assert '"succeeded"' in events[-1][1]["data"]


def test_records_expire(redis_url: str) -> None:
    store = JobStore(sync_redis(redis_url), result_ttl_s=1)
    job = make_job(store)
    assert store.redis.ttl(f"m4t:job:{job.id}") in (1, 2)
    time.sleep(2.2)
    assert store.get(job.id) is None
    assert store.gone_owner(job.id) == ""


def test_unreachable_redis_raises_connection_error() -> None:
    store = JobStore(sync_redis("redis://127.0.0.1:1/0"), result_ttl_s=60)
    with pytest.raises(redis.ConnectionError):
        store.get(new_job_id())


def test_cancelling_a_queued_job_ends_it_at_once_and_it_never_runs(store: JobStore) -> None:
    job = make_job(store)
    assert store.request_cancel(job.id) is CancelOutcome.CANCELLED
    cancelled = store.get(job.id)
    assert cancelled is not None
    assert cancelled.status is JobStatus.CANCELLED
    assert claim(store, job.id, "a") is ClaimOutcome.FINISHED
    assert store.request_cancel(job.id) is CancelOutcome.FINISHED
    assert store.request_cancel(new_job_id()) is CancelOutcome.MISSING


def test_cancelling_a_running_job_flags_it_for_its_worker(store: JobStore) -> None:
    job = make_job(store)
    claim(store, job.id, "a")
    assert not store.cancel_requested(job.id)
    assert store.request_cancel(job.id) is CancelOutcome.CANCELLING
    assert store.request_cancel(job.id) is CancelOutcome.CANCELLING
    assert store.cancel_requested(job.id)
    running = store.get(job.id)
    assert running is not None
    assert running.status is JobStatus.RUNNING
    assert store.mark_cancelled(job.id, token="a")
    done = store.get(job.id)
    assert done is not None
    assert done.status is JobStatus.CANCELLED


def test_one_webhook_event_per_terminal_state_created_with_the_state_change(store: JobStore) -> None:
    from shared.webhook_events import WebhookEventStore

    events = WebhookEventStore(store.redis)
    job = make_job(store, webhook_url="https://example.com/hook")
    silent = make_job(store)
    for record in (job, silent):
        claim(store, record.id, "a")
        assert store.succeed(record.id, token="a", result={"text": "x"})
        assert not store.succeed(record.id, token="a", result={"text": "again"})
    found = events.for_job(job.id)
    assert len(found) == 1
    event, attempts = found[0]
    assert (event.type, event.status, event.url, attempts) == (
        "job.succeeded",
        "pending",
        "https://example.com/hook",
        [],
    )
    assert events.for_job(silent.id) == []
    assert events.take_due(now=time.time() + 1, window_s=60) == [event.id]
    assert events.take_due(now=time.time() + 1, window_s=60) == []  # taken: not handed out twice in its window


def test_cancelled_queued_job_with_a_webhook_gets_its_event(store: JobStore) -> None:
    from shared.webhook_events import WebhookEventStore

    job = make_job(store, webhook_url="https://example.com/hook")
    assert store.queue_position(job.id) is not None
    store.request_cancel(job.id)
    assert store.queue_position(job.id) is None
    ((event, _),) = WebhookEventStore(store.redis).for_job(job.id)
    assert event.type == "job.cancelled"
