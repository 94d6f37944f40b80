"""Celery tasks of evals: drive experiments until every trial is scored."""

from __future__ import annotations

from celery import shared_task

from .models import Experiment, ExperimentStatus, HillClimb

POLL_S = 2.0


@shared_task(acks_late=True)
def advance_experiment(experiment_id: int) -> bool:
    """Start and score what is ready; look again soon while trials are still running (beat also sweeps)."""
    from .experiments import advance

    done = advance(experiment_id)
    if done is False:
        advance_experiment.apply_async((experiment_id,), countdown=POLL_S)
    return bool(done)


@shared_task
def sweep_experiments() -> int:
    """Hand running experiments and hill-climbs back to the queue: a lost message or a dead worker stalls none."""
    from datetime import timedelta

    from django.db.models import Q
    from django.utils import timezone

    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    quiet = Q(polled_at__isnull=True) | Q(polled_at__lt=now - timedelta(seconds=60))
    running = Experiment.objects.filter(free, quiet, status=ExperimentStatus.RUNNING)
    ids = list(running.values_list("pk", flat=True))
    for pk in ids:
        advance_experiment.delay(pk)
    climbs = list(HillClimb.objects.filter(free, status=ExperimentStatus.RUNNING).values_list("pk", flat=True))
    for pk in climbs:
        advance_hill_climb.delay(pk)
    return len(ids) + len(climbs)


@shared_task(acks_late=True)
def advance_hill_climb(climb_id: int) -> bool:
    """Take the climb one step; look again soon while its run works."""
    from .hillclimb import advance

    done = advance(climb_id)
    if done is False:
        advance_hill_climb.apply_async((climb_id,), countdown=POLL_S)
    return bool(done)
