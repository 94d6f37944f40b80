"""The dashboards page, in process: the figures' data in the page (means and intervals per model, cost against
score, durations, pass rate per day), the task and experiment filters, and nothing of another org's."""

from __future__ import annotations

import json
import re
from decimal import Decimal

import pytest
from django.test import Client

from evals.actions import ADJUDICATED
from evals.models import Dataset, DatasetItem, Experiment, Trial
from orgs.models import Collection, public_code
from runs.models import Task
from tests.factories import make_run
from trajectories.actions import record_label
from trajectories.models import Run


def signed_in(user) -> Client:
    client = Client()
    client.force_login(user)
    return client


def charts(html: str) -> dict[str, dict]:
    found = re.findall(r'<script type="application/json" id="chart-([\w-]+)-data">(.*?)</script>', html, re.S)
    return {name: json.loads(text) for name, text in found}


def graded(org, model: str, grade: float, passed: bool, *, task: str = "essay", cost: str = "0") -> Run:
    run = make_run(org, task=task, model=model)
    Run.objects.filter(pk=run.pk).update(cost_usd=Decimal(cost))
    common = {"source": "judge", "author": "judge:scripted/judge"}
    record_label(run, "eval.grade", grade, **common)
    record_label(run, "eval.pass", passed, **common)
    return run


def make_experiment(org, name: str, runs: list[tuple[Run, float, bool]]) -> Experiment:
    collection = Collection.objects.create(org=org, name=f"c-{name}")
    task = Task.objects.create(collection=collection, name="essay", kind="runbook")
    dataset = Dataset.objects.create(public_id=public_code("ds"), org=org, name=name)
    experiment = Experiment.objects.create(
        public_id=public_code("exp"), org=org, name=name, task=task, dataset=dataset, model_names=["a", "b"]
    )
    for i, (run, score, passed) in enumerate(runs):
        item = DatasetItem.objects.create(dataset=dataset, key=f"item-{i}")
        Trial.objects.create(
            experiment=experiment,
            item=item,
            model=run.model,
            repeat=0,
            run=run,
            score=score,
            passed=passed,
            scored=True,
        )
    return experiment


def bars(figure: dict, metric: str) -> dict[str, float]:
    trace = next(t for t in figure["data"] if t["name"] == metric)
    return dict(zip(trace["x"], trace["y"], strict=True))


def test_the_dashboards_say_so_when_there_are_no_runs(alice):
    page = signed_in(alice.member).get("/dashboards/")
    html = page.content.decode()
    assert page.status_code == 200 and 'id="no-runs"' in html and "No runs yet" in html
    assert charts(html) == {} and "plotly" not in html


def test_score_by_model_holds_each_models_mean_with_an_interval(alice):
    for grade, passed in ((4.0, True), (5.0, True), (3.0, False)):
        graded(alice.org, "scripted/a", grade, passed)
    for grade in (2.0, 1.0):
        graded(alice.org, "scripted/b", grade, False)
    html = signed_in(alice.member).get("/dashboards/").content.decode()
    figures = charts(html)
    assert set(figures) == {"score-by-model", "cost-vs-score", "latency", "pass-rate-over-time"}
    for name in figures:
        assert f'<div class="chart" id="chart-{name}">' in html
    score = figures["score-by-model"]
    assert bars(score, "mean score") == {"scripted/a": pytest.approx(4.0), "scripted/b": pytest.approx(1.5)}
    assert bars(score, "pass rate") == {"scripted/a": pytest.approx(2 / 3), "scripted/b": 0.0}
    trace = next(t for t in score["data"] if t["name"] == "mean score")
    low, high = trace["customdata"][0][:2]
    assert low < 4.0 < high and trace["error_y"]["array"][0] == pytest.approx(high - 4.0)
    assert re.search(r'data-model="scripted/a">.*?4\.00', html, re.S)


def test_cost_duration_and_pass_rate_charts_hold_each_models_runs(alice):
    cheap = graded(alice.org, "scripted/a", 4.0, True, cost="0.01")
    graded(alice.org, "scripted/b", 2.0, False, cost="0.5")
    make_run(alice.org, task="essay", model="scripted/b")  # not scored: in the durations only
    figures = charts(signed_in(alice.member).get("/dashboards/").content.decode())
    scatter = {t["name"]: t for t in figures["cost-vs-score"]["data"]}
    assert scatter["scripted/a"]["x"] == [0.01] and scatter["scripted/a"]["y"] == [4.0]
    assert scatter["scripted/a"]["text"] == [cheap.public_id] and scatter["scripted/b"]["x"] == [0.5]
    boxes = {t["name"]: t["y"] for t in figures["latency"]["data"]}
    assert boxes == {"scripted/a": [pytest.approx(1.0)], "scripted/b": [pytest.approx(1.0)] * 2}
    daily = {t["name"]: t for t in figures["pass-rate-over-time"]["data"]}
    assert daily["scripted/a"]["y"] == [1.0] and daily["scripted/b"]["y"] == [0.0]
    assert daily["scripted/a"]["x"] == [cheap.created.date().isoformat()]


def test_settled_and_reviewers_scores_come_before_the_judges(alice):
    run = graded(alice.org, "scripted/a", 2.0, False)
    record_label(run, "eval.grade", 4.0, source="human", author="acme-owner")
    record_label(run, "eval.grade", 3.0, source="human", author="acme-member")
    assert bars(
        charts(signed_in(alice.owner).get("/dashboards/").content.decode())["score-by-model"], "mean score"
    ) == {"scripted/a": 3.5}
    record_label(run, "eval.grade", 5.0, source="system", author=ADJUDICATED)
    page = signed_in(alice.owner).get("/dashboards/").content.decode()
    assert bars(charts(page)["score-by-model"], "mean score") == {"scripted/a": 5.0}


def test_the_task_filter_keeps_one_tasks_runs(alice):
    graded(alice.org, "scripted/a", 4.0, True, task="essay")
    graded(alice.org, "scripted/b", 2.0, False, task="poem")
    client = signed_in(alice.member)
    essays = charts(client.get("/dashboards/?task=essay").content.decode())
    assert bars(essays["score-by-model"], "mean score") == {"scripted/a": 4.0}
    assert "No runs yet for this filter" in client.get("/dashboards/?task=novel").content.decode()


def test_the_experiment_filter_uses_its_trials_scores(alice):
    a = make_run(alice.org, task="essay", model="a")
    b1, b2 = make_run(alice.org, task="essay", model="b"), make_run(alice.org, task="essay", model="b")
    graded(alice.org, "c", 5.0, True)  # outside the experiment
    experiment = make_experiment(alice.org, "first", [(a, 0.9, True), (b1, 0.2, False), (b2, 0.4, False)])
    page = signed_in(alice.member).get(f"/dashboards/?experiment={experiment.public_id}").content.decode()
    assert "3 runs of experiment first" in page
    means = bars(charts(page)["score-by-model"], "mean score")
    assert means == {"a": pytest.approx(0.9), "b": pytest.approx(0.3)}
    assert f'value="{experiment.public_id}" selected' in page


def test_another_orgs_runs_and_experiments_stay_out(alice, bob):
    graded(alice.org, "scripted/ours", 4.0, True)
    theirs = graded(bob.org, "scripted/theirs", 1.0, False, task="secret-task")
    experiment = make_experiment(bob.org, "theirs", [(theirs, 0.1, False)])
    client = signed_in(alice.owner)
    assert client.get(f"/dashboards/?experiment={experiment.public_id}").status_code == 404
    page = client.get("/dashboards/").content.decode()
    assert "scripted/theirs" not in page and "secret-task" not in page and experiment.public_id not in page
    assert "No runs yet" in client.get("/dashboards/?task=secret-task").content.decode()


def test_plotly_js_is_served_from_the_installed_package_for_a_year(alice):
    import plotly

    graded(alice.org, "scripted/a", 4.0, True)
    html = signed_in(alice.member).get("/dashboards/").content.decode()
    url = f"/dashboards/plotly-{plotly.__version__}.js"
    assert f'<script src="{url}">' in html
    response = Client().get(url)
    assert response.status_code == 200 and response["Content-Type"].startswith("text/javascript")
    assert "max-age=31536000" in response["Cache-Control"] and b"plotly" in response.content[:2000].lower()
