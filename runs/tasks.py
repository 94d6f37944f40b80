"""Celery tasks of the runs app. Tasks take ids, are idempotent and safe to run twice."""

from __future__ import annotations

import logging
from datetime import timedelta

from celery import shared_task
from django.conf import settings
from django.utils import timezone

from trajectories.actions import move_run
from trajectories.models import FINAL_STATUSES, Run, RunStatus

from .gateway.recorder import recover_spool
from .models import Job

logger = logging.getLogger(__name__)


@shared_task
def recover_gateway_spool() -> int:
    """Store gateway calls left in spool segments by processes that died before flushing them."""
    stored = recover_spool()
    if stored:
        logger.warning("recovered %d gateway call(s) from orphaned spool segments", stored)
    return stored


@shared_task(bind=True, acks_late=True, reject_on_worker_lost=True, max_retries=3)
def execute_run(self, run_id: int) -> None:
    """Execute an agent run. Platform faults put it back in the queue and retry with backoff."""
    from .execution import PlatformError, execute

    try:
        execute(run_id)
    except PlatformError as exc:
        logger.warning("run %s hit a platform fault: %s", run_id, exc)
        if self.request.retries >= self.max_retries:
            from .actions import end_run

            end_run(run_id, RunStatus.FAILED, error_kind="platform", error=str(exc))
            return
        move_run(run_id, RunStatus.QUEUED, reason=f"platform fault, retrying: {exc}")
        raise self.retry(exc=exc, countdown=2 ** (self.request.retries + 1)) from exc
    except Exception as exc:
        # A bug, not a passing fault: retrying would hit it again. The run ends instead of hanging.
        logger.exception("run %s failed on an internal error", run_id)
        from .actions import end_run

        if not Run.objects.filter(pk=run_id, status__in=FINAL_STATUSES).exists():
            end_run(run_id, RunStatus.FAILED, error_kind="platform", error=f"internal error: {exc!r}")


@shared_task
def sweep_runs() -> int:
    """Hand stalled runs (a worker died) and forgotten queued runs (a message lost) back to the queue, and send
    held runs whose org has a free slot (a release lost with a process that died)."""
    from .actions import release_runs

    now = timezone.now()
    stalled = Job.objects.filter(run__status=RunStatus.RUNNING, heartbeat_at__lt=now - Job.stalled_after())
    # A queued run's message can be lost with the broker (a Redis restart without persistence): after this long
    # in the queue it is sent again. A duplicate is harmless (claiming a run is a database transaction).
    waited = timedelta(seconds=settings.JETTY_QUEUED_RESEND_S)
    forgotten = Job.objects.filter(run__status=RunStatus.QUEUED, dispatched_at__lt=now - waited)
    ids = set(stalled.values_list("run_id", flat=True)) | set(forgotten.values_list("run_id", flat=True))
    for run_id in ids:
        execute_run.delay(run_id)
    if ids:
        logger.warning("sweeper re-queued %d run(s)", len(ids))
    holding = Job.objects.filter(run__status=RunStatus.QUEUED, dispatched_at__isnull=True)
    for org_id in holding.values_list("org_id", flat=True).distinct():
        release_runs(org_id)
    remove_orphaned_sandboxes()
    return len(ids)


def remove_orphaned_sandboxes() -> int:
    """Destroy sandboxes (folders, cgroups, containers) whose run is over: a worker died before cleaning up."""
    from trajectories.models import FINAL_STATUSES, Run

    from .sandboxes import destroy_leftovers, sandbox_root

    names = {p.name.rsplit("-a", 1)[0] for p in sandbox_root().iterdir() if p.is_dir() and "-a" in p.name}
    finished = Run.objects.filter(public_id__in=names, status__in=sorted(FINAL_STATUSES)).values_list(
        "public_id", flat=True
    )
    for public_id in finished:
        destroy_leftovers(public_id)
    return len(finished)


@shared_task
def fire_routines() -> int:
    """Start the runs of every routine that is due (each scheduled time runs once, however often this fires)."""
    from .routines import fire_due

    return len(fire_due(timezone.now()))


@shared_task(bind=True, acks_late=True)
def deliver_webhook(self, run_id: int, attempt: int = 1) -> bool:
    """Deliver a finished run to its webhook, retrying with exponential backoff; every attempt is recorded."""
    from django.conf import settings

    from .webhooks import deliver

    delivered = deliver(run_id, attempt)
    if delivered is None:  # delivered already, or this attempt was made by another message: nothing to follow
        return False
    if delivered:
        return True
    if attempt < settings.JETTY_WEBHOOK_MAX_ATTEMPTS:
        deliver_webhook.apply_async(
            (run_id, attempt + 1), countdown=settings.JETTY_WEBHOOK_BACKOFF_S * 2 ** (attempt - 1)
        )
    else:
        logger.warning("webhook for run %s failed after %d attempts", run_id, attempt)
    return False


@shared_task
def sweep_webhooks() -> int:
    """Send again the webhook deliveries whose message was lost: a first attempt or a retry that is long overdue."""
    from .webhooks import overdue

    late = overdue(timezone.now())
    for run_id, attempt in late:
        deliver_webhook.delay(run_id, attempt)
    if late:
        logger.warning("webhook sweeper re-sent %d delivery(ies)", len(late))
    return len(late)


@shared_task
def prune_old_runs() -> int:
    """Delete finished runs older than ``JETTY_RETENTION_DAYS`` (0, the default, keeps everything)."""
    from .retention import prune

    if settings.JETTY_RETENTION_DAYS <= 0:
        return 0
    report = prune(timezone.now() - timedelta(days=settings.JETTY_RETENTION_DAYS), actor_name="prune_old_runs")
    logger.info("retention: %s", report.summary())
    return report.runs
