"""Evals: rubrics and their pass rule, the rubric judge over a compacted trajectory (scripted judges with fixed
verdicts), human labels with history, and experiments scored end to end with a worker."""

from __future__ import annotations

import http.server
import json
import threading
import time

import pytest

from evals.judges import compact_trajectory
from evals.models import Rubric
from orgs.models import public_code
from trajectories.actions import EventRecord, RunRecord, record_finished_runs
from trajectories.models import LabelChange, Run
from trajectories.schemas import model_call

from .factories import command, make_run
from .test_workflows import finished, push, step, workflow

pytestmark = pytest.mark.django_db(transaction=True)

CRITERIA = [
    {"name": "correctness", "description": "Right answer", "weight": 2, "anchors": {"1": "wrong", "5": "right"}},
    {"name": "clarity", "description": "Clear report", "weight": 1, "anchors": {"1": "muddled", "5": "clear"}},
]


def rubric(org, **rules) -> Rubric:
    return Rubric.objects.create(public_id=public_code("rub"), org=org, name="quality", criteria=CRITERIA, **rules)


def test_the_pass_rule_weighs_floors_and_hard_floors(alice):
    r = rubric(alice.org, pass_threshold=4.0, floor=3, hard_floors={"correctness": 4})
    assert r.verdict({"correctness": 5, "clarity": 4}) == (4.6667, True, [])
    grade, passed, reasons = r.verdict({"correctness": 4, "clarity": 3})
    assert (grade, passed) == (3.6667, False) and reasons == ["average 3.67 is below 4.0"]
    grade, passed, reasons = r.verdict({"correctness": 5, "clarity": 2})
    assert passed is False and reasons == ["clarity scored 2, below the floor of 3"]
    assert r.verdict({"correctness": 3, "clarity": 5})[2] == [
        "average 3.67 is below 4.0",
        "correctness scored 3, below its hard floor of 4",
    ]


def agent_like_run(org) -> Run:
    now = time.time()
    response = {
        "choices": [
            {"message": {"content": None, "tool_calls": [{"function": {"name": "bash", "arguments": '{"cmd": "ls"}'}}]}}
        ]
    }
    events = [
        EventRecord(kind="model.call", ts=now, payload=model_call("chat", {"messages": []}, response), model="m"),
        EventRecord(kind="tool.call", ts=now + 1, payload={"name": "bash", "arguments": {"cmd": "ls"}}),
        command("ls /app", now + 2, output="results\n"),
        EventRecord(
            kind="file.change", ts=now + 3, payload={"path": "/app/results/a.txt", "action": "created", "size": 3}
        ),
        EventRecord(kind="log", ts=now + 4, payload={"line": "noise"}),
        EventRecord(kind="agent.message", ts=now + 5, payload={"content": "All done."}),
    ]
    record = RunRecord(
        public_id=public_code("run"),
        org_id=org.pk,
        task="review",
        kind="agent",
        status="succeeded",
        created=now,
        model="scripted/default",
        agent="jetty-agent",
        events=events,
    )
    record_finished_runs([record])
    return Run.objects.get(public_id=record.public_id)


def test_the_judge_reads_the_whole_trajectory_compacted(alice):
    text = compact_trajectory(agent_like_run(alice.org))
    assert "asked for tool bash" in text and "[command exit 0] ls /app" in text and "results" in text
    assert "[file created] /app/results/a.txt" in text and "[agent] All done." in text and "noise" not in text
    assert len(compact_trajectory(agent_like_run(alice.org), limit=150)) < 600  # long ones are cut in the middle


def test_judging_a_run_stores_the_verdict_as_labels(alice, alice_api):
    run = agent_like_run(alice.org)
    r = rubric(alice.org)
    body = alice_api.post(
        f"/api/v1/runs/{run.public_id}/judge", {"rubric": "quality", "model": "scripted/score-4"}, format="json"
    ).json()
    assert body["scores"] == {"correctness": 4, "clarity": 4} and body["grade"] == 4.0 and body["passed"] is True
    labels = {(x["key"], x["author"]): x for x in alice_api.get(f"/api/v1/runs/{run.public_id}/labels").json()["data"]}
    grade = labels[("eval.grade", "judge:scripted/score-4")]
    assert (
        grade["value"] == 4.0
        and grade["judge_model"] == "scripted/score-4"
        and grade["prompt_version"] == "rubric-judge/1"
    )
    assert json.loads(grade["raw_output"])["scores"]["clarity"]["score"] == 4 and grade["rubric"] == r.public_id
    assert labels[("score.correctness", "judge:scripted/score-4")]["criterion"] == "correctness"
    low = alice_api.post(
        f"/api/v1/runs/{run.public_id}/judge", {"rubric": r.public_id, "model": "scripted/score-2"}, format="json"
    ).json()
    assert low["passed"] is False and "below the floor of 3" in low["reasons"][-1]
    verdicts = run.events.filter(kind="judge.verdict")
    assert verdicts.count() == 2
    run.refresh_from_db()
    assert run.total_tokens == 0  # a verdict is not the run's own spending
    same = alice_api.post(
        f"/api/v1/runs/{run.public_id}/judge", {"rubric": "quality", "model": "scripted/default"}, format="json"
    )
    assert same.status_code == 400 and "model under test" in same.json()["error"]["message"]
    allowed = alice_api.post(
        f"/api/v1/runs/{run.public_id}/judge",
        {"rubric": "quality", "model": "scripted/default", "allow_same_model": True},
        format="json",
    )
    assert allowed.status_code == 200


def test_human_labels_keep_their_history_per_reviewer(alice, alice_api, bob_api):
    run = make_run(alice.org, events=2)
    url = f"/api/v1/runs/{run.public_id}/labels"
    assert (
        alice_api.post(url, {"key": "score.correctness", "value": 3, "reviewer": "ann"}, format="json").status_code
        == 201
    )
    alice_api.post(url, {"key": "score.correctness", "value": 4, "reviewer": "ann"}, format="json")
    alice_api.post(url, {"key": "score.correctness", "value": 2, "reviewer": "ben"}, format="json")
    on_event = alice_api.post(
        url, {"key": "flag", "value": "odd", "event_seq": 2, "reviewer": "ann"}, format="json"
    ).json()
    assert on_event["event_seq"] == 2
    labels = alice_api.get(url).json()["data"]
    assert sorted((x["author"], x["key"], x["value"]) for x in labels) == [
        ("ann", "flag", "odd"),
        ("ann", "score.correctness", 4),
        ("ben", "score.correctness", 2),
    ]
    history = alice_api.get(f"{url}/history").json()["data"]
    assert [(h["author"], h["previous"], h["value"]) for h in history if h["key"] == "score.correctness"] == [
        ("ann", None, 3),
        ("ann", 3, 4),
        ("ben", None, 2),
    ]
    assert alice_api.delete(f"{url}/{on_event['id']}").status_code == 204
    assert LabelChange.objects.filter(key="flag", value__isnull=True, previous="odd").exists()
    assert alice_api.post(url, {"key": "bad key!", "value": 1}, format="json").status_code == 400
    assert (
        alice_api.post(url, {"key": "x", "value": 1, "event_seq": 99}, format="json").json()["error"]["param"]
        == "event_seq"
    )
    assert bob_api.get(url).status_code == 404
    assert bob_api.post(url, {"key": "x", "value": 1}, format="json").status_code == 404


def test_a_rubric_judge_step_scores_an_agent_step(alice, alice_api, worker):
    from .test_agent_runs import RUNBOOK

    rubric(alice.org)
    definition = workflow(
        step(
            "agent",
            "runbook",
            runbook=RUNBOOK,
            agent="jetty-agent",
            model="scripted/default",
            template_variables={"name": "ada"},
        ),
        step("judge", "rubric_judge", run_id_path="agent.outputs.run_id", rubric="quality", model="scripted/score-5"),
    )
    assert push(alice_api, "evals", "judged", workflow=definition).status_code == 201
    body = alice_api.post("/api/v1/run-sync/evals/judged", {}, format="json").json()
    assert body["status"] == "succeeded", body["error"]
    assert body["outputs"]["passed"] is True and body["outputs"]["scores"] == {"correctness": 5, "clarity": 5}
    (child,) = Run.objects.get(public_id=body["run_id"]).children.all()
    assert child.labels.get(key="eval.pass", author="judge:scripted/score-5").value is True


def test_an_experiment_runs_and_scores_every_trial(alice, alice_api, worker):
    push(
        alice_api,
        "evals",
        "shout",
        workflow=workflow(step("shout", "text_template", template="{{ init_params.item }}!")),
    )
    dataset = alice_api.post(
        "/api/v1/datasets",
        {
            "name": "words",
            "items": [
                {"key": "a", "inputs": {"item": "a"}, "expected": {"outputs.text": "a!"}},
                {"key": "b", "inputs": {"item": "b"}, "expected": {"outputs.text": "b!"}},
                {"key": "c", "inputs": {"item": "c"}, "expected": "nope"},
            ],
        },
        format="json",
    )
    assert dataset.status_code == 201
    created = alice_api.post(
        "/api/v1/experiments",
        {"task": "evals/shout", "dataset": "words", "models": ["scripted/default", "scripted/alt"], "repeats": 2},
        format="json",
    )
    assert created.status_code == 201 and created.json()["trials"] == 12
    experiment = created.json()["id"]
    deadline = time.monotonic() + 90
    while (state := alice_api.get(f"/api/v1/experiments/{experiment}").json())["status"] != "done":
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    summary = state["results"]["summary"]["models"]
    assert summary["scripted/default"]["pass_rate"]["value"] == pytest.approx(2 / 3)
    assert summary["scripted/alt"]["n_runs"] == 6 and summary["scripted/alt"]["flaky_items"] == []
    assert state["results"]["comparison"]["verdict"] == "inconclusive"
    assert state["scored"] == 12
    for run in Run.objects.filter(trials__experiment__public_id=experiment):
        assert finished(run.public_id).status == "succeeded"


def test_bad_experiments_and_rubrics_are_refused(alice_api, bob_api):
    assert (
        alice_api.post("/api/v1/rubrics", {"name": "r", "criteria": []}, format="json").json()["error"]["param"]
        == "criteria"
    )
    bad = alice_api.post(
        "/api/v1/rubrics", {"name": "r", "criteria": [{"name": "x", "anchors": {"9": "?"}}]}, format="json"
    )
    assert bad.status_code == 400 and "anchors" in bad.json()["error"]["message"]
    ok = alice_api.post(
        "/api/v1/rubrics", {"name": "r", "criteria": CRITERIA, "hard_floors": {"correctness": 4}}, format="json"
    )
    assert ok.status_code == 201
    assert bob_api.get(f"/api/v1/rubrics/{ok.json()['id']}").status_code == 404
    assert alice_api.post("/api/v1/experiments", {"task": "nope/nope"}, format="json").status_code == 404
    assert not Rubric.objects.filter(name="r").count() > 1


def finished_experiment(api) -> str:
    push(api, "evals", "shout", workflow=workflow(step("shout", "text_template", template="{{ init_params.item }}!")))
    items = [{"key": k, "inputs": {"item": k}, "expected": {"outputs.text": f"{k}!"}} for k in ("a", "b", "c")]
    items[2]["expected"] = "nope"
    api.post("/api/v1/datasets", {"name": "words", "items": items}, format="json")
    body = {"task": "evals/shout", "dataset": "words", "models": ["scripted/default", "scripted/alt"], "repeats": 2}
    experiment = api.post("/api/v1/experiments", body, format="json").json()["id"]
    deadline = time.monotonic() + 90
    while api.get(f"/api/v1/experiments/{experiment}").json()["status"] != "done":
        assert time.monotonic() < deadline
        time.sleep(0.3)
    return experiment


class FakeGitHub(http.server.BaseHTTPRequestHandler):
    comments: list = []

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers["content-length"])))
        FakeGitHub.comments.append((self.path, self.headers["Authorization"], body["body"]))
        self.send_response(201)
        self.send_header("content-type", "application/json")
        self.end_headers()
        self.wfile.write(json.dumps({"html_url": "https://github.test/acme/widgets/pull/7#c1"}).encode())

    def log_message(self, *args):
        pass


def test_the_gate_cli_passes_fails_and_posts_its_report_to_github(
    alice, alice_api, worker, jetty, tmp_path, monkeypatch
):
    from .test_cli import cli

    experiment = finished_experiment(alice_api)
    login = {"url": jetty.url, "token": alice.token}
    passing = cli(tmp_path, "gate", experiment, "--rule", '{"metric": "pass_rate", "min": 0.6}', **login)
    assert passing.returncode == 0, passing.stderr
    assert (
        passing.stdout.startswith("## ✅") and "scripted/default" in passing.stdout and "gate passed" in passing.stderr
    )
    failing = cli(tmp_path, "gate", experiment, "--rule", '{"metric": "pass_rate", "min": 0.9}', **login)
    assert failing.returncode == 1 and failing.stdout.startswith("## ❌") and "gate FAILED" in failing.stderr
    relative = '{"metric": "pass_rate", "not_worse_than": "scripted/alt", "confidence": 0.95}'
    assert cli(tmp_path, "gate", experiment, "--rule", relative, **login).returncode == 0
    assert cli(tmp_path, "gate", experiment, "--rule", '{"metric": "nope", "min": 1}', **login).returncode == 2

    FakeGitHub.comments = []
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), FakeGitHub)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    monkeypatch.setenv("GITHUB_TOKEN", "ghs_test")
    monkeypatch.setenv("GITHUB_API_URL", f"http://127.0.0.1:{server.server_port}")
    try:
        posted = cli(
            tmp_path,
            "gate",
            experiment,
            "--rule",
            '{"metric": "pass_rate", "min": 0.9}',
            "--report",
            "gate.md",
            "--github-repo",
            "acme/widgets",
            "--pr",
            "7",
            **login,
        )
    finally:
        server.shutdown()
    assert posted.returncode == 1 and "posted https://github.test/acme/widgets/pull/7#c1" in posted.stderr
    ((path, auth, comment),) = FakeGitHub.comments
    assert path == "/repos/acme/widgets/issues/7/comments" and auth == "Bearer ghs_test"
    assert comment == (tmp_path / "gate.md").read_text() and comment.startswith("## ❌")


def test_agreement_between_reviewers_and_with_the_judge(alice, alice_api):
    from sklearn.metrics import cohen_kappa_score

    runs = [make_run(alice.org, task="review") for _ in range(5)]
    ann, ben, judge = [5, 4, 3, 2, 4], [5, 3, 3, 2, 5], [5, 4, 3, 2, 4]
    for run, a, b, j in zip(runs, ann, ben, judge, strict=True):
        url = f"/api/v1/runs/{run.public_id}/labels"
        alice_api.post(url, {"key": "score.correctness", "value": a, "reviewer": "ann"}, format="json")
        alice_api.post(url, {"key": "score.correctness", "value": b, "reviewer": "ben"}, format="json")
        from trajectories.actions import record_label

        record_label(run, "score.correctness", j, source="judge", author="judge:scripted/score-4")
    body = alice_api.get("/api/v1/evals/agreement").json()
    (reviewers,) = body["reviewers"]
    expected = cohen_kappa_score(ann, ben, weights="quadratic", labels=[1, 2, 3, 4, 5])
    assert reviewers["criterion"] == "correctness" and reviewers["n_items"] == 5
    assert reviewers["kappa"] == pytest.approx(expected)
    (versus,) = body["judge_vs_human"]
    assert versus["n"] == 5 and versus["exact_agreement"] is not None


def test_hill_climbing_stops_on_patience_and_keeps_every_round(alice, alice_api, worker):
    from .factories import STORED_RUNBOOK

    runbook = STORED_RUNBOOK.replace(
        "secrets:\n  API_TOKEN: {env: SERVICE_TOKEN, description: the service token, required: true}\n", ""
    ).replace(' token {{secrets.API_TOKEN}}" && test -n "$SERVICE_TOKEN"', '"')
    push(alice_api, "evals", "greet", runbook=runbook)
    rubric(alice.org)
    body = {
        "task": "evals/greet",
        "rubric": "quality",
        "judge_model": "scripted/score-4",
        "reviser_model": "scripted/default",
        "init_params": {"name": "ada"},
        "max_rounds": 5,
        "patience": 2,
    }
    created = alice_api.post("/api/v1/hill-climbs", body, format="json")
    assert created.status_code == 201, created.json()
    deadline = time.monotonic() + 120
    while (state := alice_api.get(f"/api/v1/hill-climbs/{created.json()['id']}").json())["status"] == "running":
        assert time.monotonic() < deadline, state
        time.sleep(0.3)
    assert state["status"] == "done"
    rounds = state["rounds"]
    assert [r["grade"] for r in rounds] == [4.0, 4.0, 4.0]  # two rounds without improvement: patience is out
    assert [r["improved"] for r in rounds] == [True, False, False] and state["best_version"] == 1
    runs = [Run.objects.get(public_id=r["run_id"]) for r in rounds]
    assert len({r.pk for r in runs}) == 3 and all(r.status == "succeeded" for r in runs)
    assert all(r.labels.filter(key="eval.grade", author="judge:scripted/score-4").exists() for r in runs)
    same = alice_api.post("/api/v1/hill-climbs", {**body, "model": "scripted/score-4"}, format="json")
    assert same.status_code == 400 and same.json()["error"]["param"] == "judge_model"
