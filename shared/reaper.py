"""The reaper: running jobs whose worker is gone (lease lapsed) go back to the queue.

Every inference worker runs it every few seconds, so a crashed worker's job is picked up again within about
one lease period, whatever the broker's visibility timeout. A job that keeps killing its workers stops after
``max_attempts`` starts (the claim fails it with ``too_many_attempts``).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from shared.jobs import JobStore
from shared.messages import JobMessage

log = logging.getLogger(__name__)


def requeue_orphaned_jobs(store: JobStore, send: Callable[[JobMessage], None]) -> list[str]:
    requeued: list[str] = []
    for job_id in store.running_job_ids():
        if not store.requeue_if_lease_lapsed(job_id):
            continue
        record = store.get(job_id)
        if record is None:
            continue
        send(record.to_message())
        requeued.append(job_id)
        log.warning("job %s: its worker is gone; requeued (attempt %d so far)", job_id, record.attempts)
    return requeued
