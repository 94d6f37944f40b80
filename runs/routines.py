"""Routines: stored tasks run on a schedule (hourly, daily, weekdays, weekly; UTC), fired by Celery beat.

Each scheduled time starts its run with an idempotency key made of the routine and that time, so a beat that fires
twice, or two beats, never start it twice. Times missed while nothing fired are not caught up: the next run is
the next scheduled time after now.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from typing import Any

from django.db import transaction

from orgs.auth import Principal
from orgs.models import public_code
from trajectories.models import Run

from .models import Cadence, Routine, Task
from .stored import start_task_run

logger = logging.getLogger(__name__)

WEEKDAYS = range(5)  # Monday to Friday


def next_time(cadence: str, minute: int, hour: int, weekday: int, after: datetime) -> datetime:
    """The first scheduled time strictly after ``after`` (UTC)."""
    after = after.astimezone(UTC)
    if cadence == Cadence.HOURLY:
        candidate = after.replace(minute=minute, second=0, microsecond=0)
        return candidate if candidate > after else candidate + timedelta(hours=1)
    candidate = after.replace(hour=hour, minute=minute, second=0, microsecond=0)
    if candidate <= after:
        candidate += timedelta(days=1)
    while (cadence == Cadence.WEEKDAYS and candidate.weekday() not in WEEKDAYS) or (
        cadence == Cadence.WEEKLY and candidate.weekday() != weekday
    ):
        candidate += timedelta(days=1)
    return candidate


def schedule_of(routine: Routine, after: datetime) -> datetime:
    return next_time(routine.cadence, routine.minute, routine.hour, routine.weekday, after)


def create_routine(principal: Principal, task: Task, fields: dict[str, Any], now: datetime) -> Routine:
    routine = Routine(public_id=public_code("rtn"), task=task, token_prefix=principal.prefix, **fields)
    routine.next_run_at = schedule_of(routine, now)
    routine.save()
    return routine


def _principal(routine: Routine) -> Principal:
    collection = routine.task.collection
    return Principal(org=collection.org, token=None, collection=collection, prefix=routine.token_prefix)


def start(routine: Routine, key: str) -> Run:
    overrides = {"idempotency_key": key}
    return start_task_run(_principal(routine), routine.task, dict(routine.init_params), overrides=overrides)


def run_now(routine: Routine, now: datetime) -> Run:
    run = start(routine, f"routine:{routine.public_id}:now:{now.isoformat()}")
    Routine.objects.filter(pk=routine.pk).update(last_run=run)
    return run


def fire_due(now: datetime) -> list[Run]:
    """Start every due, unpaused routine's run, and move it to its next time."""
    started = []
    due = Routine.objects.filter(paused=False, next_run_at__lte=now).values_list("pk", flat=True)
    for pk in due:
        with transaction.atomic():
            routine = (
                Routine.objects.select_for_update(skip_locked=True)
                .select_related("task__collection__org")
                .filter(pk=pk, paused=False, next_run_at__lte=now)
                .first()
            )
            if routine is None:
                continue
            try:
                run = start(routine, f"routine:{routine.public_id}:{routine.next_run_at.isoformat()}")
            except Exception as exc:  # a routine that cannot start (a secret removed, say) must not stop the others
                logger.warning("routine %s could not start: %s", routine.public_id, exc)
                run = None
            routine.last_run = run
            routine.next_run_at = schedule_of(routine, now)
            routine.save(update_fields=["last_run", "next_run_at"])
            if run is not None:
                started.append(run)
    return started
