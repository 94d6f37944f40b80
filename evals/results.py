"""An experiment's trials as a pandas frame, and the statistics, comparison and gate computed on it
(``evals.stats``)."""

from __future__ import annotations

from typing import Any

import pandas as pd

from . import stats
from .models import Experiment, ExperimentStatus


def trials_frame(experiment: Experiment) -> pd.DataFrame:
    """One row per scored trial: model, item, repeat, score, passed, cost, tokens, duration, status."""
    rows = [
        {
            "model": t.model,
            "item": t.item.key,
            "repeat": t.repeat,
            "score": t.score,
            "passed": t.passed,
            "cost_usd": float(t.run.cost_usd) if t.run else 0.0,
            "total_tokens": t.run.total_tokens if t.run else 0,
            "duration_s": t.run.duration_s if t.run else None,
            "status": t.run.status if t.run else "not_started",
        }
        for t in experiment.trials.filter(scored=True).select_related("item", "run")
    ]
    columns = ["model", "item", "repeat", "score", "passed", "cost_usd", "total_tokens", "duration_s", "status"]
    return pd.DataFrame(rows, columns=columns)


def experiment_results(experiment: Experiment) -> dict[str, Any] | None:
    frame = trials_frame(experiment)
    if frame.empty:
        return None
    results: dict[str, Any] = {
        "complete": experiment.status == ExperimentStatus.DONE,
        "summary": stats.summarise(frame).to_dict(),
    }
    models = [m for m in experiment.model_names if m in set(frame["model"])]
    if len(models) >= 2:  # the first model is the candidate, the second its baseline: differences are first - second
        results["comparison"] = stats.compare(frame, models[0], models[1]).to_dict()
    return results


def gate_experiment(experiment: Experiment, rule: dict[str, Any], model: str | None) -> dict[str, Any]:
    """Apply a gate rule to the experiment's results for ``model`` (default: the first model)."""
    if experiment.status != ExperimentStatus.DONE:
        raise ValueError(f"the experiment is {experiment.status}, not done: a gate reads finished experiments")
    frame = trials_frame(experiment)
    candidate = model or experiment.model_names[0]
    if candidate not in set(frame["model"]):
        raise ValueError(f"the experiment has no results for model {candidate!r}")
    summary = stats.summarise(frame)
    comparison = None
    baseline = rule.get("not_worse_than")
    if baseline is not None:
        if baseline not in set(frame["model"]):
            raise ValueError(f"the experiment has no results for the baseline {baseline!r}")
        comparison = stats.compare(frame, candidate, baseline, confidence=float(rule.get("confidence", 0.95)))
    verdict = stats.gate(comparison if comparison is not None else summary, {**rule, "model": candidate})
    title = f"Jetty gate: {experiment.task.collection.name}/{experiment.task.name} ({experiment.public_id})"
    report = stats.markdown_report(summary, comparison=comparison, gate_result=verdict, title=title)
    return {"experiment": experiment.public_id, "model": candidate, **verdict.to_dict(), "report": report}


def agreement_rows(humans: pd.DataFrame) -> list[dict[str, Any]]:
    """Reviewer agreement per criterion, where at least two humans scored the same run."""
    if humans.empty:
        return []
    try:
        return [a.to_dict() for a in stats.agreement_by_criterion(humans[["item", "criterion", "reviewer", "value"]])]
    except ValueError:  # no item with two ratings yet: nothing to agree on
        return []


def judge_rows(humans: pd.DataFrame, judges: pd.DataFrame) -> list[dict[str, Any]]:
    """Each judge against the humans' consensus, per criterion, on the runs both scored."""
    if humans.empty or judges.empty:
        return []
    frame = pd.concat([humans.assign(is_judge=False), judges.assign(is_judge=True)])
    try:
        return [
            a.to_dict() for a in stats.judge_vs_human(frame[["item", "criterion", "reviewer", "value", "is_judge"]])
        ]
    except ValueError:
        return []
