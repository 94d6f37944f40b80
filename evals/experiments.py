"""Experiments: start every trial's run, score each as it ends (rubric judge, or the expected output and the
validation report), and tell when it is done. Driven by the ``advance_experiment`` Celery task."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from orgs.auth import Principal
from orgs.models import public_code
from runs.stored import start_task_run
from runs.workflows.paths import PathError, resolve
from runs.workflows.steps.agents import run_record
from trajectories.actions import record_label
from trajectories.models import FINAL_STATUSES, LabelSource, Run, RunStatus

from .judges import JudgeError, judge_run
from .models import Dataset, Experiment, ExperimentStatus, Rubric, Trial

MAX_TRIALS = 2000


def start_experiment(
    principal: Principal,
    task,
    dataset: Dataset,
    models: list[str],
    repeats: int,
    *,
    rubric: Rubric | None = None,
    judge_model: str = "",
    name: str = "",
) -> Experiment:
    """Create the experiment and its trials (items x models x repeats); their runs start once committed."""
    from .tasks import advance_experiment

    items = list(dataset.items.all())
    if not items:
        raise ValueError("the dataset has no items")
    if len(items) * len(models) * repeats > MAX_TRIALS:
        raise ValueError(f"at most {MAX_TRIALS} runs per experiment")
    with transaction.atomic():
        experiment = Experiment.objects.create(
            public_id=public_code("exp"),
            org=principal.org,
            name=name,
            task=task,
            dataset=dataset,
            model_names=models,
            repeats=repeats,
            rubric=rubric,
            judge_model=judge_model,
            token_prefix=principal.prefix,
        )
        Trial.objects.bulk_create(
            Trial(experiment=experiment, item=item, model=model, repeat=r)
            for item in items
            for model in models
            for r in range(1, repeats + 1)
        )
        transaction.on_commit(lambda: advance_experiment.delay(experiment.pk))
    return experiment


def _principal(experiment: Experiment) -> Principal:
    collection = experiment.task.collection
    return Principal(org=experiment.org, token=None, collection=collection, prefix=experiment.token_prefix)


def start_trials(experiment: Experiment) -> int:
    """Start the runs of trials that have none (idempotent: a trial's run has a key of its own)."""
    started = 0
    for trial in experiment.trials.filter(run__isnull=True).select_related("item"):
        overrides: dict[str, Any] = {
            "model": trial.model,
            "file_paths": trial.item.file_paths,
            "idempotency_key": f"experiment:{experiment.public_id}:{trial.pk}",
        }
        try:
            run = start_task_run(_principal(experiment), experiment.task, dict(trial.item.inputs), overrides=overrides)
        except Exception as exc:  # one bad item must not stop the others: the trial records why
            Trial.objects.filter(pk=trial.pk).update(error=str(getattr(exc, "message", exc))[:2000], scored=True)
            continue
        Trial.objects.filter(pk=trial.pk).update(run=run)
        started += 1
    return started


def matches_expected(run: Run, expected: Any) -> bool:
    """A text is expected inside the answer; an object maps paths into the run record (`outputs.text`,
    `validation.overall_passed`, `files[0].text`) to the values they must hold."""
    record = run_record(run)
    if isinstance(expected, str):
        return expected.strip().lower() in (record["final_answer"] or "").lower()
    if isinstance(expected, dict):
        for path, value in expected.items():
            try:
                if resolve(f"run.{path}", {"run": record}) != value:
                    return False
            except PathError:
                return False
        return True
    return True


def score_trial(experiment: Experiment, trial: Trial) -> None:
    assert trial.run_id is not None
    run = Run.objects.select_related("org", "job").get(pk=trial.run_id)
    succeeded = run.status == RunStatus.SUCCEEDED
    error = ""
    if experiment.rubric is not None and experiment.judge_model:
        try:
            verdict = judge_run(run, experiment.rubric, experiment.judge_model)
            score, passed = float(verdict["grade"]), bool(verdict["passed"]) and succeeded
        except JudgeError as exc:
            score, passed, error = None, False, f"judge: {exc}"
    else:
        validation = getattr(run, "job", None) and run.job.validation
        valid = not isinstance(validation, dict) or validation.get("overall_passed") is not False
        expected = trial.item.expected
        passed = succeeded and valid and (expected is None or matches_expected(run, expected))
        score = 1.0 if passed else 0.0
        record_label(run, "eval.pass", passed, source=LabelSource.SYSTEM, author=f"experiment:{experiment.public_id}")
    Trial.objects.filter(pk=trial.pk).update(score=score, passed=passed, scored=True, error=error)


LEASE = timedelta(minutes=5)


def advance(experiment_id: int) -> bool | None:
    """Start what has not started, score what has ended: True once every trial is scored, False while some run,
    None when another worker holds the experiment (it goes on from there)."""
    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if not Experiment.objects.filter(free, pk=experiment_id).update(lease_until=now + LEASE, polled_at=now):
        return None
    try:
        return _advance(experiment_id)
    finally:
        Experiment.objects.filter(pk=experiment_id).update(lease_until=None)


def _advance(experiment_id: int) -> bool:
    experiment = Experiment.objects.select_related("task__collection", "rubric", "org").get(pk=experiment_id)
    if experiment.status in (ExperimentStatus.DONE, ExperimentStatus.FAILED):
        return True
    start_trials(experiment)
    pending = experiment.trials.filter(scored=False, run__status__in=sorted(FINAL_STATUSES)).select_related("item")
    for trial in pending:
        score_trial(experiment, trial)
    if experiment.trials.filter(scored=False).exists():
        return False
    Experiment.objects.filter(pk=experiment.pk).update(status=ExperimentStatus.DONE, finished=timezone.now())
    return True
