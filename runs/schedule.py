"""Every periodic task, in one place (Celery beat reads ``CELERY_BEAT_SCHEDULE``).

Periodic tasks go to a queue of their own, ``jetty-periodic``, so a small worker can serve them while every run slot
is busy. Both queues are declared in ``CELERY_TASK_QUEUES``: a worker started without ``-Q`` consumes both.
"""

from __future__ import annotations

import enum

from kombu import Exchange
from kombu import Queue as KombuQueue


class Queue(enum.StrEnum):
    DEFAULT = "celery"
    PERIODIC = "jetty-periodic"


CELERY_BEAT_SCHEDULE = {
    "sweep-runs": {
        "task": "runs.tasks.sweep_runs",
        "schedule": 20.0,
        "options": {"queue": Queue.PERIODIC, "expires": 18},
    },
    "fire-routines": {
        "task": "runs.tasks.fire_routines",
        "schedule": 30.0,
        "options": {"queue": Queue.PERIODIC, "expires": 25},
    },
    "sweep-experiments": {
        "task": "evals.tasks.sweep_experiments",
        "schedule": 60.0,
        "options": {"queue": Queue.PERIODIC, "expires": 55},
    },
    "recover-gateway-spool": {
        "task": "runs.tasks.recover_gateway_spool",
        "schedule": 30.0,
        "options": {"queue": Queue.PERIODIC, "expires": 25},
    },
    "sweep-webhooks": {
        "task": "runs.tasks.sweep_webhooks",
        "schedule": 60.0,
        "options": {"queue": Queue.PERIODIC, "expires": 55},
    },
    "prune-runs": {
        "task": "runs.tasks.prune_old_runs",
        "schedule": 24 * 3600.0,
        "options": {"queue": Queue.PERIODIC, "expires": 3600},
    },
}

# One direct exchange for both queues (the filesystem broker keeps a file per exchange).
_EXCHANGE = Exchange(Queue.DEFAULT.value, type="direct")
CELERY_TASK_DEFAULT_QUEUE = Queue.DEFAULT.value
CELERY_TASK_QUEUES = tuple(KombuQueue(q.value, _EXCHANGE, routing_key=q.value) for q in Queue)
# A scheduled task called directly (``sweep_runs.delay()``) takes the same queue as beat's.
CELERY_TASK_ROUTES = {entry["task"]: {"queue": Queue.PERIODIC.value} for entry in CELERY_BEAT_SCHEDULE.values()}
