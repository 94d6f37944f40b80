"""Small factories in code (no fixtures files)."""

from __future__ import annotations

import itertools
import time

from orgs.models import Org, public_code
from trajectories.actions import EventRecord, RunRecord, record_finished_runs
from trajectories.models import Run

_counter = itertools.count()


def command(text: str, ts: float = 1.0, *, output: str | None = None, exit_code: int | None = 0) -> EventRecord:
    """A ``command`` event as the adapters record one (``trajectories.schemas.Command``)."""
    payload = {"command": text, "output": output, "exit_code": exit_code, "ok": exit_code == 0}
    return EventRecord(kind="command", ts=ts, payload=payload)


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


REVIEW_CRITERIA = [
    {
        "name": "correctness",
        "description": "Does the work do what was asked?",
        "weight": 2,
        "anchors": {"1": "wrong", "3": "partly right", "5": "entirely right"},
    },
    {
        "name": "clarity",
        "description": "Can a reader follow it?",
        "weight": 1,
        "anchors": {"1": "opaque", "5": "crystal clear"},
    },
]


def make_rubric(org: Org, name: str = "quality", **rules):
    """A two-criterion rubric (correctness weighs double); passing needs an average of 3.5 and nothing below 2."""
    from evals.models import Rubric

    rules = {"pass_threshold": 3.5, "floor": 2, **rules}
    return Rubric.objects.create(public_id=public_code("rub"), org=org, name=name, criteria=REVIEW_CRITERIA, **rules)


# A runbook that passes the validator with no findings, for stored tasks. It declares a secret, and its first step
# prints it (so the tests can see it masked wherever the output is stored).
STORED_RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
agent: jetty-agent
model: scripted/default
primary_outputs: [count.txt]
secrets:
  API_TOKEN: {env: SERVICE_TOKEN, description: the service token, required: true}
---
# Objective
Count the words of a greeting for {{name}}.

## REQUIRED OUTPUT FILES
- `/app/results/count.txt`
- `/app/results/summary.md`
- `/app/results/validation_report.json`

## Parameters
- `name`: who to greet

## Dependencies
- coreutils

## Step 1: environment setup
```bash
mkdir -p /app/results && echo "region $REGION token {{secrets.API_TOKEN}}" && test -n "$SERVICE_TOKEN"
```

## Step 2: count
```bash
echo "hello {{name}}" | wc -w > /app/results/count.txt && cat /app/results/count.txt
```

## Evaluate
| result | when |
|---|---|
| PASS | count.txt holds 2 |

## Iterate (max 3 rounds)
| symptom | fix |
|---|---|
| empty count | rerun step 2 |

## Summary
Write summary.md.

## Validation report
```bash
echo '{"version": "1.0.0", "overall_passed": true, "results": {"pass": 1, "partial": 0, "fail": 0},' \\
  '"stages": [{"name": "count", "passed": true, "message": "ok"}]}' \\
  > /app/results/validation_report.json
```

## Final Checklist
```bash
test -s /app/results/count.txt && test -s /app/results/validation_report.json
```

## Tips
Keep it short.
"""
