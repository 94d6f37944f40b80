"""Every periodic task, in one place (Celery beat reads ``CELERY_BEAT_SCHEDULE``)."""

from __future__ import annotations

import enum


class Queue(enum.StrEnum):
    DEFAULT = "celery"


CELERY_BEAT_SCHEDULE = {
    "sweep-runs": {
        "task": "runs.tasks.sweep_runs",
        "schedule": 20.0,
        "options": {"queue": Queue.DEFAULT, "expires": 18},
    },
    "fire-routines": {
        "task": "runs.tasks.fire_routines",
        "schedule": 30.0,
        "options": {"queue": Queue.DEFAULT, "expires": 25},
    },
    "sweep-experiments": {
        "task": "evals.tasks.sweep_experiments",
        "schedule": 60.0,
        "options": {"queue": Queue.DEFAULT, "expires": 55},
    },
    "recover-gateway-spool": {
        "task": "runs.tasks.recover_gateway_spool",
        "schedule": 30.0,
        "options": {"queue": Queue.DEFAULT, "expires": 25},
    },
}
