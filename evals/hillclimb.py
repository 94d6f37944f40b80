"""Hill-climbing a runbook against its judge, one round at a time, driven by ``advance_hill_climb``.

A round runs the candidate version, judges the run, and records {round, version, run_id, grade, passed,
reasons}. The best version so far is kept; a reviser model is then shown the best runbook and the judge's
reasons and asked for a better one, which is pushed as a new version (the validator refuses broken ones, which
counts as a round without improvement). It stops at ``max_rounds``, after ``patience`` rounds without
improvement, or at a perfect grade.
"""

from __future__ import annotations

import re
from datetime import timedelta

from django.db.models import Q
from django.utils import timezone

from orgs.api_errors import ApiError
from orgs.auth import Principal
from runs.llm import ModelError, complete
from runs.models import TaskKind
from runs.stored import push_version, start_task_run
from trajectories.models import FINAL_STATUSES, Run, RunStatus

from .judges import JudgeError, judge_run
from .models import ExperimentStatus, HillClimb

LEASE = timedelta(minutes=5)
FENCE = re.compile(r"```(?:markdown|md)\n(.*?)\n```", re.S)

REVISE_PROMPT = """You improve runbooks: markdown missions that a coding agent follows in a sandbox. Below is the
best version so far, then what a strict judge said about the agent's last run. Write a better runbook that keeps
the same objective, outputs and frontmatter keys, and fixes what the judge found. Answer with the whole new
runbook in one ```markdown fenced block.

The runbook:
```markdown
{runbook}
```

The judge (grade {grade} of 5, {verdict}):
{reasons}
"""


def _principal(climb: HillClimb) -> Principal:
    collection = climb.task.collection
    return Principal(org=climb.org, token=None, collection=collection, prefix=climb.token_prefix)


def advance(climb_id: int) -> bool | None:
    """One step of the climb. True when it has ended, False while a run works, None when another worker holds it."""
    now = timezone.now()
    free = Q(lease_until__isnull=True) | Q(lease_until__lt=now)
    if not HillClimb.objects.filter(free, pk=climb_id).update(lease_until=now + LEASE):
        return None
    try:
        return _advance(HillClimb.objects.select_related("task__collection", "rubric", "org").get(pk=climb_id))
    finally:
        HillClimb.objects.filter(pk=climb_id).update(lease_until=None)


def _advance(climb: HillClimb) -> bool:
    if climb.status != ExperimentStatus.RUNNING:
        return True
    if climb.current_run is None:
        overrides = {"idempotency_key": f"hillclimb:{climb.public_id}:{len(climb.rounds) + 1}"}
        if climb.model:
            overrides["model"] = climb.model
        try:
            run = start_task_run(
                _principal(climb),
                climb.task,
                dict(climb.init_params),
                version=climb.candidate_version,
                overrides=overrides,
            )
        except ApiError as exc:
            return _end(climb, ExperimentStatus.FAILED, f"could not start a run: {exc.message}")
        climb.current_run = run
        climb.save(update_fields=["current_run"])
        return False
    run = Run.objects.select_related("org", "job").get(pk=climb.current_run.pk)
    if run.status not in FINAL_STATUSES:
        return False
    entry = judge_round(climb, run)
    climb.rounds = [*climb.rounds, entry]
    if entry["grade"] is not None and (climb.best_grade is None or entry["grade"] > climb.best_grade):
        climb.best_grade, climb.best_version, entry["improved"] = entry["grade"], entry["version"], True
    climb.current_run = None
    stale = 0
    for previous in reversed(climb.rounds):
        if previous.get("improved"):
            break
        stale += 1
    if len(climb.rounds) >= climb.max_rounds or stale >= climb.patience or climb.best_grade == 5.0:
        climb.save(update_fields=["rounds", "best_grade", "best_version", "current_run"])
        return _end(climb, ExperimentStatus.DONE)
    climb.candidate_version = revise(climb, entry)
    climb.save(update_fields=["rounds", "best_grade", "best_version", "current_run", "candidate_version"])
    return False


def judge_round(climb: HillClimb, run: Run) -> dict:
    entry: dict = {"round": len(climb.rounds) + 1, "version": climb.candidate_version, "run_id": run.public_id}
    entry.update(status=run.status, improved=False, grade=None, passed=False, reasons=[])
    try:
        verdict = judge_run(run, climb.rubric, climb.judge_model)
    except JudgeError as exc:
        entry["reasons"] = [f"judge: {exc}"]
        return entry
    grade = verdict["grade"] if run.status == RunStatus.SUCCEEDED else 1.0
    entry.update(grade=grade, passed=verdict["passed"] and run.status == RunStatus.SUCCEEDED)
    entry["reasons"] = verdict["reasons"] + [f"{k}: {v}" for k, v in verdict["scores"].items()]
    if verdict["explanation"]:
        entry["reasons"].append(verdict["explanation"])
    return entry


def revise(climb: HillClimb, entry: dict) -> int:
    """A new candidate version from the reviser model (the best version again when it offers nothing valid)."""
    best = climb.task.version(climb.best_version or climb.candidate_version)
    verdict = "passed" if entry["passed"] else "failed"
    prompt = REVISE_PROMPT.format(
        runbook=best.runbook,
        grade=entry["grade"],
        verdict=verdict,
        reasons="\n".join(f"- {r}" for r in entry["reasons"]),
    )
    try:
        answer = complete(climb.org, climb.reviser_model, [{"role": "user", "content": prompt}])
    except ModelError as exc:
        entry["revision"] = f"the reviser failed: {exc}"
        return best.number
    found = FENCE.findall(answer.text)
    if not found:
        entry["revision"] = "the reviser gave no fenced runbook"
        return best.number
    try:
        version = push_version(
            _principal(climb),
            climb.task.collection,
            climb.task.name,
            kind=TaskKind.RUNBOOK,
            runbook=found[-1] + "\n",
            files=best.files,
            message=f"hill-climb {climb.public_id} round {entry['round']}",
        )
    except ApiError as exc:
        entry["revision"] = f"refused: {exc.message}"
        return best.number
    entry["revision"] = f"version {version.number}"
    return version.number


def _end(climb: HillClimb, status: str, error: str = "") -> bool:
    if error:
        climb.rounds = [*climb.rounds, {"error": error}]
    climb.status = status
    climb.save(update_fields=["status", "rounds"])
    return True
