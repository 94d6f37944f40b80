"""Routines: stored tasks on a UTC schedule, fired by beat's `fire_routines`, paused, resumed and run now."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from runs.models import Routine
from runs.routines import fire_due, next_time
from runs.schedule import CELERY_BEAT_SCHEDULE
from trajectories.models import Run

from .test_workflows import finished, push, step, workflow

pytestmark = pytest.mark.django_db(transaction=True)

FRIDAY_NOON = datetime(2026, 11, 27, 12, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("cadence", "minute", "hour", "weekday", "after", "expected"),
    [
        ("hourly", 15, 0, 0, FRIDAY_NOON, datetime(2026, 11, 27, 12, 15, tzinfo=UTC)),
        ("hourly", 0, 0, 0, FRIDAY_NOON, datetime(2026, 11, 27, 13, 0, tzinfo=UTC)),  # strictly after
        ("daily", 30, 9, 0, FRIDAY_NOON, datetime(2026, 11, 28, 9, 30, tzinfo=UTC)),
        ("daily", 0, 18, 0, FRIDAY_NOON, datetime(2026, 11, 27, 18, 0, tzinfo=UTC)),
        ("weekdays", 0, 9, 0, FRIDAY_NOON, datetime(2026, 11, 30, 9, 0, tzinfo=UTC)),  # over the weekend
        ("weekdays", 0, 13, 0, FRIDAY_NOON, datetime(2026, 11, 27, 13, 0, tzinfo=UTC)),
        ("weekly", 0, 8, 2, FRIDAY_NOON, datetime(2026, 12, 2, 8, 0, tzinfo=UTC)),  # next Wednesday
        ("weekly", 0, 12, 4, FRIDAY_NOON, datetime(2026, 12, 4, 12, 0, tzinfo=UTC)),  # a week on, not now
    ],
)
def test_next_time(cadence, minute, hour, weekday, after, expected):
    assert next_time(cadence, minute, hour, weekday, after) == expected


def test_beat_fires_routines():
    assert CELERY_BEAT_SCHEDULE["fire-routines"]["task"] == "runs.tasks.fire_routines"


ECHO = workflow(step("say", "text_template", template="hello {{ init_params.who }}"))


def test_routines_through_the_api(alice_api, bob_api):
    push(alice_api, "sched", "hello", workflow=ECHO)
    url = "/api/v1/collections/sched/tasks/hello/routines"
    bad = alice_api.post(url, {"cadence": "monthly"}, format="json")
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "cadence"
    assert alice_api.post(url, {"cadence": "daily", "hour": 24}, format="json").json()["error"]["param"] == "hour"
    created = alice_api.post(url, {"cadence": "daily", "hour": 6, "init_params": {"who": "ada"}}, format="json")
    assert created.status_code == 201
    routine = created.json()
    assert routine["next_run_at"].endswith("06:00:00+00:00") and routine["paused"] is False
    assert [r["id"] for r in alice_api.get("/api/v1/routines").json()["data"]] == [routine["id"]]
    assert bob_api.get(f"/api/v1/routines/{routine['id']}").status_code == 404
    assert bob_api.post(f"/api/v1/routines/{routine['id']}/run").status_code == 404
    assert bob_api.get("/api/v1/routines").json()["data"] == []
    paused = alice_api.post(f"/api/v1/routines/{routine['id']}/pause").json()
    assert paused["paused"] is True
    assert alice_api.post(f"/api/v1/routines/{routine['id']}/resume").json()["paused"] is False
    moved = alice_api.patch(f"/api/v1/routines/{routine['id']}", {"cadence": "hourly", "minute": 5}, format="json")
    assert moved.json()["cadence"] == "hourly" and ":05:00" in moved.json()["next_run_at"]
    assert alice_api.delete(f"/api/v1/routines/{routine['id']}").status_code == 204
    assert not Routine.objects.exists()


def test_due_routines_start_once_and_paused_ones_wait(alice_api, worker):
    push(alice_api, "sched", "hello", workflow=ECHO)
    url = "/api/v1/collections/sched/tasks/hello/routines"
    due = alice_api.post(url, {"cadence": "hourly", "init_params": {"who": "ada"}}, format="json").json()
    held = alice_api.post(url, {"cadence": "hourly", "init_params": {"who": "bo"}}, format="json").json()
    alice_api.post(f"/api/v1/routines/{held['id']}/pause")
    later = datetime.fromisoformat(due["next_run_at"]) + timedelta(seconds=1)
    (run,) = fire_due(later)
    assert fire_due(later) == []  # already moved on: the same time never fires twice
    assert finished(run.public_id).metadata["outputs"] == {"text": "hello ada"}
    routine = Routine.objects.get(public_id=due["id"])
    assert routine.last_run_id == run.pk and routine.next_run_at > later
    now = alice_api.post(f"/api/v1/routines/{held['id']}/run").json()  # paused, yet run now on request
    assert finished(now["run_id"]).metadata["outputs"] == {"text": "hello bo"}
    assert Run.objects.filter(kind="workflow").count() == 2
