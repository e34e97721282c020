"""The Celery app both sides share: broker settings and queues. The gateway uses it only to send by task name;
the worker registers its tasks on it (``worker/tasks.py``)."""

from __future__ import annotations

from celery import Celery
from kombu.entity import Queue

from shared.broker_transport import TRANSPORT
from shared.messages import DELIVER_WEBHOOK_TASK, RUN_JOB_TASK
from shared.priority import BROKER_PRIORITY_STEPS, BROKER_SEP
from shared.settings import CommonSettings

# kombu normally scans for unacked messages of dead consumers only every ~100 s; scan every few seconds instead.
UNACKED_RESTORE_INTERVAL_S = 5


def make_celery(settings: CommonSettings, *, name: str = "m4t") -> Celery:
    app = Celery(name, broker=settings.redis_url, set_as_current=False)
    app.conf.update(
        task_serializer="json",
        accept_content=["json"],
        result_backend=None,
        task_ignore_result=True,
        task_queues=[Queue(settings.inference_queue), Queue(settings.webhook_queue)],
        task_default_queue=settings.inference_queue,
        task_routes={
            RUN_JOB_TASK: {"queue": settings.inference_queue},
            DELIVER_WEBHOOK_TASK: {"queue": settings.webhook_queue},
        },
        # Long inference jobs: ack after the job, one message at a time, requeue when the worker is lost.
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        worker_send_task_events=True,
        task_send_sent_event=True,
        broker_connection_retry_on_startup=True,
        broker_connection_timeout=3.0,
        broker_transport=TRANSPORT,  # kombu's Redis transport, repaired to survive a Redis restart
        broker_transport_options={
            "visibility_timeout": settings.visibility_timeout_s,
            # One Redis list per priority step, read most urgent first (0 is the HIGHEST priority on Redis).
            "priority_steps": list(BROKER_PRIORITY_STEPS),
            "sep": BROKER_SEP,
            "queue_order_strategy": "priority",
            "unacked_restore_interval": UNACKED_RESTORE_INTERVAL_S,
            "unacked_restore_throttle": 1,
            "socket_connect_timeout": 2,
            "socket_timeout": 10,
            "max_retries": 2,
            "interval_start": 0,
            "interval_step": 0.5,
            "interval_max": 1,
        },
        broker_pool_limit=16,
    )
    return app
