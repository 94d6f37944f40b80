"""The dashboards' data and charts: one row per run (its model, score, pass, cost, duration, day) and plotly figures
built from it. Intervals come from ``evals.stats.summarise`` (items resampled, repeats averaged first)."""

from __future__ import annotations

from collections import defaultdict
from typing import Any

import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from orgs.models import Org
from trajectories.models import Label, LabelSource, Run

from . import stats
from .actions import ADJUDICATED
from .models import Experiment

MAX_RUNS = 5000
RESAMPLES = 2000
COLUMNS = ["run", "model", "item", "repeat", "score", "passed", "cost_usd", "duration_s", "status", "day"]
# Whose verdict a run's score is when several hold one: the settled one, then the reviewers', the judges', the
# platform's. Within the first that has one, their mean (a pass when at least half say pass).
_PRECEDENCE: dict[str, int] = {LabelSource.HUMAN: 1, LabelSource.JUDGE: 2, LabelSource.SYSTEM: 3}


def _verdicts(run_ids: list[int]) -> dict[int, dict[str, Any]]:
    found: dict[int, dict[str, dict[int, list[float]]]] = defaultdict(lambda: defaultdict(lambda: defaultdict(list)))
    labels = Label.objects.filter(run_id__in=run_ids, event__isnull=True, key__in=("eval.grade", "eval.pass"))
    for run_id, key, author, source, value in labels.values_list("run_id", "key", "author", "source", "value"):
        if not isinstance(value, bool | int | float) or (key == "eval.grade" and isinstance(value, bool)):
            continue
        tier = 0 if author == ADJUDICATED else _PRECEDENCE.get(source, 4)
        found[run_id][key][tier].append(float(value))
    out: dict[int, dict[str, Any]] = {}
    for run_id, keys in found.items():
        verdict: dict[str, Any] = {}
        if grades := keys.get("eval.grade"):
            values = grades[min(grades)]
            verdict["score"] = sum(values) / len(values)
        if passes := keys.get("eval.pass"):
            values = passes[min(passes)]
            verdict["passed"] = sum(values) / len(values) >= 0.5
        out[run_id] = verdict
    return out


def runs_frame(org: Org, *, task: str = "", experiment: Experiment | None = None) -> pd.DataFrame:
    """The org's latest runs (of one task, of one experiment) with their scores. An experiment's runs carry its
    trials' scores and items; other runs are each their own item, scored by their ``eval.grade`` and ``eval.pass``
    labels."""
    rows = []
    if experiment is not None:
        trials = experiment.trials.filter(run__isnull=False).select_related("run", "item")
        if task:
            trials = trials.filter(run__task=task)
        for t in trials[:MAX_RUNS]:
            assert t.run is not None
            rows.append(_row(t.run, t.model, t.item.key, t.repeat, t.score if t.scored else None, t.passed))
    else:
        runs = Run.objects.for_org(org)
        if task:
            runs = runs.filter(task=task)
        found = list(runs.order_by("-created")[:MAX_RUNS])
        verdicts = _verdicts([r.pk for r in found])
        for run in found:
            v = verdicts.get(run.pk, {})
            rows.append(_row(run, run.model or "(no model)", run.public_id, None, v.get("score"), v.get("passed")))
    return pd.DataFrame(rows, columns=COLUMNS)


def chart_text(text: str) -> str:
    """Text a tenant chose, as plotly shows it literally: plotly reads ``<a href>``, ``<b>`` and ``<br>`` in any
    label as markup, so a model named ``<a href=...>`` would put the tenant's link in the chart."""
    return text.replace("<", "\u2039").replace(">", "\u203a")


def _row(run: Run, model: str, item: str, repeat: int | None, score: Any, passed: Any) -> dict[str, Any]:
    return {
        "run": run.public_id,
        "model": chart_text(model),
        "item": item,
        "repeat": repeat,
        "score": score,
        "passed": passed,
        "cost_usd": float(run.cost_usd),
        "duration_s": run.duration_s,
        "status": run.status,
        "day": run.created.date().isoformat(),
    }


def summary(frame: pd.DataFrame) -> stats.Summary | None:
    scored = frame[frame["score"].notna() | frame["passed"].notna()]
    if scored.empty:
        return None
    return stats.summarise(scored, resamples=RESAMPLES)


def summary_rows(frame: pd.DataFrame) -> list[dict[str, Any]]:
    """A row per model for the table under the charts."""
    result = summary(frame)
    figures = result.to_dict()["models"] if result else {}
    rows = []
    for model, group in frame.groupby("model", sort=True):
        s = figures.get(model, {})
        durations = group["duration_s"].dropna()
        rows.append(
            {
                "model": model,
                "runs": len(group),
                "scored": int((group["score"].notna() | group["passed"].notna()).sum()),
                "mean_score": s.get("mean_score"),
                "pass_rate": s.get("pass_rate"),
                "cost_usd": float(group["cost_usd"].sum()),
                "cost_per_solved": s.get("cost_per_solved"),
                "latency_p50": float(durations.median()) if len(durations) else None,
            }
        )
    return rows


def _layout(fig: go.Figure, title: str, **axes: Any) -> go.Figure:
    fig.update_layout(
        title={"text": title, "x": 0, "font": {"size": 15}},
        margin={"l": 50, "r": 20, "t": 50, "b": 50},
        height=360,
        template="plotly_white",
        legend={"orientation": "h", "y": -0.2},
        **axes,
    )
    return fig


def _empty(title: str, message: str) -> go.Figure:
    fig = go.Figure()
    fig.add_annotation(text=message, showarrow=False, font={"size": 14, "color": "#667085"})
    fig.update_xaxes(visible=False)
    fig.update_yaxes(visible=False)
    return _layout(fig, title)


def _interval(estimates: list[dict[str, Any]]) -> dict[str, Any]:
    """Asymmetric error bars from bootstrap estimates (none where an estimate has no interval)."""
    return {
        "type": "data",
        "symmetric": False,
        "array": [(e["high"] - e["value"]) if e["high"] is not None else 0 for e in estimates],
        "arrayminus": [(e["value"] - e["low"]) if e["low"] is not None else 0 for e in estimates],
    }


def score_by_model(frame: pd.DataFrame) -> go.Figure:
    result = summary(frame)
    title = "Score and pass rate by model (95% bootstrap intervals)"
    if result is None:
        return _empty(title, "No scored runs yet: judge or label some runs")
    models = result.to_dict()["models"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Mean score", "Pass rate"))
    for col, metric in ((1, "mean_score"), (2, "pass_rate")):
        shown = [(m, s[metric]) for m, s in models.items() if s[metric]["value"] is not None]
        fig.add_trace(
            go.Bar(
                x=[m for m, _ in shown],
                y=[e["value"] for _, e in shown],
                error_y=_interval([e for _, e in shown]),
                customdata=[[e["low"], e["high"], e["n"]] for _, e in shown],
                hovertemplate="%{x}: %{y:.3f} [%{customdata[0]:.3f}, %{customdata[1]:.3f}], n=%{customdata[2]}"
                "<extra></extra>",
                name=metric.replace("_", " "),
                marker_color="#2f5bea" if col == 1 else "#137333",
                showlegend=False,
            ),
            row=1,
            col=col,
        )
    fig.update_yaxes(range=[0, 1.05], row=1, col=2)
    return _layout(fig, title)


def cost_against_score(frame: pd.DataFrame) -> go.Figure:
    title = "Cost against score, per run"
    scored = frame[frame["score"].notna()]
    if scored.empty:
        return _empty(title, "No scored runs yet")
    fig = go.Figure()
    for model, group in scored.groupby("model", sort=True):
        fig.add_trace(
            go.Scatter(
                x=group["cost_usd"].tolist(),
                y=group["score"].tolist(),
                mode="markers",
                name=str(model),
                text=group["run"].tolist(),
                hovertemplate="%{text}<br>$%{x:.5f} · score %{y:.2f}<extra>%{fullData.name}</extra>",
            )
        )
    return _layout(fig, title, xaxis_title="cost (USD)", yaxis_title="score")


def latency_by_model(frame: pd.DataFrame) -> go.Figure:
    title = "Run duration by model"
    timed = frame[frame["duration_s"].notna()]
    if timed.empty:
        return _empty(title, "No finished runs yet")
    fig = go.Figure()
    for model, group in timed.groupby("model", sort=True):
        fig.add_trace(go.Box(y=group["duration_s"].tolist(), name=str(model), boxpoints="outliers"))
    return _layout(fig, title, yaxis_title="seconds", showlegend=False)


def pass_rate_over_time(frame: pd.DataFrame) -> go.Figure:
    title = "Pass rate per day"
    judged = frame[frame["passed"].notna()].assign(passed=lambda f: f["passed"].astype(float))
    if judged.empty:
        return _empty(title, "No runs with a pass or fail yet")
    fig = go.Figure()
    for model, group in judged.groupby("model", sort=True):
        daily = group.groupby("day", sort=True)["passed"].agg(["mean", "size"])
        fig.add_trace(
            go.Scatter(
                x=list(daily.index),
                y=daily["mean"].tolist(),
                customdata=daily["size"].tolist(),
                mode="lines+markers",
                name=str(model),
                hovertemplate="%{x}: %{y:.0%} of %{customdata} runs<extra>%{fullData.name}</extra>",
            )
        )
    return _layout(
        fig,
        title,
        yaxis={"range": [0, 1.05], "tickformat": ".0%"},
        xaxis={"type": "date", "tickformat": "%Y-%m-%d", "dtick": 86_400_000},
    )


CHARTS = {
    "score-by-model": score_by_model,
    "cost-vs-score": cost_against_score,
    "latency": latency_by_model,
    "pass-rate-over-time": pass_rate_over_time,
}


def to_script_json(fig: go.Figure) -> str:
    """The figure as JSON safe inside a ``<script>`` element (no ``<``, ``>`` or ``&`` from names or ids)."""
    text = fig.to_json()
    return text.replace("<", "\\u003c").replace(">", "\\u003e").replace("&", "\\u0026")


def figures(frame: pd.DataFrame) -> dict[str, str]:
    return {name: to_script_json(build(frame)) for name, build in CHARTS.items()}
