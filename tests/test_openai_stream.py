"""The transcription stream of /v1 read from a job's real event stream in Redis (the store's own Lua writes it):
a job run again from its start publishes its segments again, and the stream sends each segment once."""

from __future__ import annotations

import asyncio
import json

from gateway.openai_compat.transcripts import transcript_events
from shared.jobs import ClaimOutcome, JobStore, new_job_id
from shared.redis_client import async_redis, sync_redis
from shared.tasks import Task


def _run(store: JobStore, job_id: str, token: str, texts: list[str]) -> None:
    assert store.claim(job_id, token=token, worker="w", lease_s=5, max_attempts=3) is ClaimOutcome.CLAIMED
    for index, text in enumerate(texts):
        assert store.publish_segment(job_id, token=token, segment={"index": index, "text": text})


async def _stream(redis_url: str, job_id: str, wait_s: float) -> list[dict[str, object]]:
    aredis = async_redis(redis_url)
    try:
        chunks = [chunk async for chunk in transcript_events(aredis, job_id, text_lang="eng", wait_s=wait_s)]
    finally:
        await aredis.aclose()
    return [json.loads(chunk.removeprefix("data: ")) for chunk in chunks if chunk.startswith("data: ")]


def _job(store: JobStore) -> str:
    record = store.new_record(
        id=new_job_id(), task=Task.S2TT, tgt_lang="eng", src_lang="eng", input_key="jobs/x/input/audio.wav"
    )
    store.create(record)
    return record.id


def test_a_job_run_twice_streams_each_segment_once(redis_url: str) -> None:
    store = JobStore(sync_redis(redis_url), result_ttl_s=600)
    job_id = _job(store)
    _run(store, job_id, "first-worker", ["one", "two"])
    assert store.hand_back(job_id, token="first-worker")  # its worker shut down: the job starts again elsewhere
    _run(store, job_id, "second-worker", ["one", "two", "", "three"])
    assert store.succeed(job_id, token="second-worker", result={"text": "one two three"})

    events = asyncio.run(_stream(redis_url, job_id, wait_s=30))
    assert events == [
        {"type": "transcript.text.delta", "delta": "one"},
        {"type": "transcript.text.delta", "delta": " two"},
        {"type": "transcript.text.delta", "delta": " three"},
        {"type": "transcript.text.done", "text": "one two three"},
    ]


def test_a_stream_ends_with_an_error_once_the_wait_is_over(redis_url: str) -> None:
    store = JobStore(sync_redis(redis_url), result_ttl_s=600)
    job_id = _job(store)
    _run(store, job_id, "slow-worker", ["one"])  # running, and never finishing here

    events = asyncio.run(_stream(redis_url, job_id, wait_s=0.5))
    assert events[0] == {"type": "transcript.text.delta", "delta": "one"}
    assert events[-1]["error"]["code"] == "wait_timeout"  # type: ignore[index]
    assert events[-1]["error"]["job_id"] == job_id  # type: ignore[index]
