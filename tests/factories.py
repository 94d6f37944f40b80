"""Small factories in code (no fixtures files)."""

from __future__ import annotations

import itertools
import time

from orgs.models import Org, public_code
from trajectories.actions import EventRecord, RunRecord, record_finished_runs
from trajectories.models import Run

_counter = itertools.count()


def make_run(
    org: Org,
    *,
    task: str = "_chat",
    model: str = "scripted/default",
    status: str = "succeeded",
    events: int = 3,
    collection=None,
    agent: str = "",
    created: float | None = None,
) -> Run:
    now = created if created is not None else time.time() + next(_counter) * 0.001
    record = RunRecord(
        public_id=public_code("run"),
        org_id=org.pk,
        task=task,
        kind="chat",
        status=status,
        created=now,
        started_at=now,
        finished_at=now + 1,
        model=model,
        agent=agent,
        collection_id=collection.pk if collection else None,
        events=[EventRecord(kind="log", ts=now + i, payload={"i": i}) for i in range(events)],
    )
    record_finished_runs([record])
    return Run.objects.get(public_id=record.public_id)
