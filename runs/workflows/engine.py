"""The workflow executor, driven by the ``execute_run`` Celery task with a run id.

Each step's pass is a ``StepRun`` row: created when the step starts, holding its inputs, the state a waiting step
keeps (its child runs) and, once finished, its outputs. A step's success and the move of the cursor to the next
step commit together, so a worker killed at any moment leaves a run that resumes exactly: finished steps are
skipped, the step in flight runs again with the same idempotency key (its child runs are found, not started
twice), and the sweeper hands a stalled workflow to another worker.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from typing import Any

from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orgs.redaction import storable
from trajectories.models import FINAL_STATUSES, ErrorKind, Run, RunStatus

from ..actions import cancel_run, end_run
from ..execution import Heartbeat, claim
from ..models import Job, StepRun, StepStatus, Workflow
from ..secrets import Masker
from .paths import PathError, resolve_params
from .registry import Json, Jump, StepContext, StepFailed, Wait, step_types

logger = logging.getLogger(__name__)

MAX_MOVES = 10_000  # steps started in one workflow run, loops included
WAIT_POLL_S = 2.0  # a waiting step is looked at again this often (a finishing child wakes it sooner)


class Release(Exception):
    """The workflow waits for child runs: give the worker back and come back later."""


def advance(run_id: int) -> None:
    """Run a workflow's steps from its checkpoint until it ends or waits."""
    from ..tasks import execute_run

    claimed = claim(run_id)
    if claimed is None:
        return
    job, _attempt = claimed
    cancelled = threading.Event()
    heartbeat = Heartbeat(job.pk, cancelled.set)
    heartbeat.start()
    try:
        Engine(run_id, job, cancelled).go()
    except Release:
        release(job)
        execute_run.apply_async((run_id,), countdown=WAIT_POLL_S)
    finally:
        heartbeat.stopped.set()


def release(job: Job) -> None:
    """Let the next claim take the run at once without calling it stalled (the worker is fine, only waiting)."""
    Job.objects.filter(pk=job.pk).update(worker="", heartbeat_at=timezone.now())


class Engine:
    def __init__(self, run_id: int, job: Job, cancelled: threading.Event):
        self.run = Run.objects.select_related("org", "collection").get(pk=run_id)
        self.job = job
        self.workflow = Workflow.objects.get(run_id=run_id)
        self.cancelled = cancelled
        definition = self.workflow.definition
        self.steps: list[str] = definition["steps"]
        self.configs: dict[str, Json] = definition["step_configs"]
        self.secrets = job.secrets
        self.mask = Masker(self.secrets)
        self._values: Json | None = None

    def storable(self, value: Json) -> Json:
        """A step's inputs or outputs as they may be stored: declared secrets masked, API and run tokens redacted, NUL
        characters and lone surrogates replaced (a step may carry a caller's own token in a header)."""
        return storable(self.mask(value))

    def values(self) -> Json:
        """What paths read: init_params, env (variables and secrets), and each step's latest finished pass. Read
        from the checkpoints once, then kept up to date as steps finish."""
        if self._values is None:
            values: Json = {"init_params": self.job.params, "env": {**self.job.env, **self.secrets}}
            for step in self.workflow.steps.filter(status=StepStatus.SUCCEEDED).order_by("visit"):
                values[step.name] = {"inputs": step.inputs, "outputs": step.outputs}
            self._values = values
        return self._values

    def go(self) -> None:
        while True:
            if self.cancelled.is_set() or Job.objects.filter(pk=self.job.pk, cancel_requested=True).exists():
                self.cancel()
                return
            if self.workflow.cursor >= len(self.steps):
                self.succeed()
                return
            if self.workflow.moves >= MAX_MOVES:
                self.fail(f"the workflow started {MAX_MOVES} steps without ending (a loop without a cap?)")
                return
            if not self.step(self.steps[self.workflow.cursor]):
                return

    def current(self, name: str) -> StepRun:
        """The pass of this step that is in flight, or a new one."""
        step = self.workflow.steps.filter(name=name).order_by("-visit").first()
        if step is not None and step.status not in StepStatus.final():
            return step
        with transaction.atomic():
            Workflow.objects.filter(pk=self.workflow.pk).update(moves=self.workflow.moves + 1)
            self.workflow.moves += 1
            return StepRun.objects.create(
                workflow=self.workflow,
                name=name,
                index=self.steps.index(name),
                visit=(step.visit + 1) if step else 1,
                step_type=self.configs[name]["type"],
            )

    def step(self, name: str) -> bool:
        """Run one step (one attempt, with retries). True to go on, False when the workflow ended."""
        config = self.configs[name]
        step_class = step_types()[config["type"]]
        record = self.current(name)
        retries = int(config.get("retries", 0))
        while True:
            record.attempts += 1
            record.save(update_fields=["attempts"])
            if record.attempts == 1 and record.status == StepStatus.RUNNING and not record.state:
                self.event(record, "step.start", {"type": config["type"], "visit": record.visit})
            try:
                outcome = self.attempt(record, step_class, config)
            except StepFailed as exc:
                error = str(exc)
            except Release:
                raise
            except Exception as exc:  # a bug in a step: the step fails, the workflow does not hang
                logger.exception("step %s of run %s raised", name, self.run.public_id)
                error = f"internal error: {exc!r}"
            else:
                going_on = self.finished(record, outcome)
                if settings.JETTY_FAULT_KILL_AFTER_STEP == record.name:
                    os.kill(os.getpid(), signal.SIGKILL)  # fault injection: the worker dies between two steps
                return going_on
            error = self.mask(error)
            if record.attempts <= retries:
                self.event(record, "log", {"level": "warning", "retry": record.attempts, "error": error})
                time.sleep(float(config.get("retry_backoff_s", 1)) * 2 ** (record.attempts - 1))
                continue
            if config.get("continue_on_error"):
                return self.finished(record, {"error": error, "failed": True})
            self.close(record, StepStatus.FAILED, error=error)
            self.fail(f"step {name!r} failed: {error}")
            return False

    def attempt(self, record: StepRun, step_class, config: Json) -> Json | Jump:
        values = self.values()
        raw = config.get("params", {})
        try:
            filled = resolve_params({k: v for k, v in raw.items() if k not in step_class.raw_params}, values)
        except PathError as exc:
            raise StepFailed(str(exc)) from None
        params = {**filled, **{k: v for k, v in raw.items() if k in step_class.raw_params}}
        step_class.check_params(params)
        stored = self.storable(params)
        if record.inputs != stored:
            record.inputs = stored
            record.save(update_fields=["inputs"])
        ctx = StepContext(
            run=self.run,
            step_name=record.name,
            visit=record.visit,
            values=values,
            state=dict(record.state),
            secrets=self.secrets,
            env=self.job.env,
        )
        started = record.started
        timeout = config.get("timeout_s")
        result = self.call(step_class(), ctx, params, timeout)
        if isinstance(result, Wait):
            if timeout and (timezone.now() - started).total_seconds() > timeout:
                self.stop_children(result.state)
                raise StepFailed(f"timed out after {timeout} s waiting for its runs")
            record.state, record.status = result.state, StepStatus.WAITING
            record.attempts -= 1  # waiting is not a failed attempt
            record.save(update_fields=["state", "status", "attempts"])
            raise Release
        return result

    def call(self, step, ctx: StepContext, params: Json, timeout: float | None) -> Any:
        """Run the step, in a thread when it has a time limit (a step that overruns fails; the thread is left)."""
        if not timeout:
            return step.run(ctx, params)
        box: dict[str, Any] = {}

        def target() -> None:
            try:
                box["result"] = step.run(ctx, params)
            except BaseException as exc:
                box["error"] = exc

        thread = threading.Thread(target=target, daemon=True, name=f"jetty-step-{ctx.step_name}")
        thread.start()
        thread.join(timeout)
        if thread.is_alive():
            raise StepFailed(f"timed out after {timeout} s")
        if "error" in box:
            raise box["error"]
        return box["result"]

    def finished(self, record: StepRun, outcome: Json | Jump) -> bool:
        outputs, target = (outcome.outputs, outcome.to) if isinstance(outcome, Jump) else (outcome, None)
        with transaction.atomic():
            self.close(record, StepStatus.SUCCEEDED, outputs=self.storable(outputs))
            if self._values is not None:
                self._values[record.name] = {"inputs": record.inputs, "outputs": record.outputs}
            cursor = self.steps.index(target) if target else record.index + 1
            Workflow.objects.filter(pk=self.workflow.pk).update(cursor=cursor)
            self.workflow.cursor = cursor
        return True

    def close(self, record: StepRun, status: str, *, outputs: Json | None = None, error: str = "") -> None:
        record.status, record.finished, record.error = status, timezone.now(), error
        record.outputs = outputs or {}
        record.save(update_fields=["status", "finished", "error", "outputs"])
        payload: Json = {"status": status, "visit": record.visit, "attempts": record.attempts}
        if error:
            payload["error"] = error
        else:
            payload["outputs"] = record.outputs
        self.event(record, "step.end", payload)

    def event(self, record: StepRun, kind: str, payload: Json) -> None:
        from trajectories.actions import EventRecord

        from ..timeline import append_with_usage

        event = EventRecord(kind=kind, ts=time.time(), span=record.name)
        event.payload = {"step": record.name, **self.mask(payload)}
        append_with_usage(self.run.pk, [event])

    def stop_children(self, state: Json) -> None:
        ids = [*state.get("run_ids", []), *([state["run_id"]] if "run_id" in state else [])]
        for child in Run.objects.filter(org_id=self.run.org_id, public_id__in=ids).exclude(status__in=FINAL_STATUSES):
            cancel_run(child)

    def succeed(self) -> None:
        last = self.workflow.steps.filter(status=StepStatus.SUCCEEDED).order_by("-finished", "-id").first()
        outputs = last.outputs if last else {}
        mapping = self.workflow.definition.get("outputs")
        if isinstance(mapping, dict):
            try:
                outputs = resolve_params(mapping, self.values())
            except PathError as exc:
                self.fail(f"outputs: {exc}")
                return
        answer = outputs.get("text") if isinstance(outputs.get("text"), str) else ""
        Job.objects.filter(pk=self.job.pk).update(final_answer=answer)
        Run.objects.filter(pk=self.run.pk).update(metadata={**self.run.metadata, "outputs": outputs})
        end_run(self.run.pk, RunStatus.SUCCEEDED)

    def fail(self, error: str) -> None:
        end_run(self.run.pk, RunStatus.FAILED, error_kind=ErrorKind.USER, error=error)

    def cancel(self) -> None:
        for record in self.workflow.steps.filter(status__in=[StepStatus.RUNNING, StepStatus.WAITING]):
            self.stop_children(record.state)
            self.close(record, StepStatus.FAILED, error="cancelled")
        end_run(self.run.pk, RunStatus.CANCELLED, error_kind=ErrorKind.USER, error="cancelled on request")
