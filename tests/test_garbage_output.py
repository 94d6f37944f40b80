"""An agent that floods its output with garbage: random bytes, NUL characters, a 5 MB line, 200,000 lines. The
run ends on its own terms, what is stored is clean (no NUL, bounded sizes), and the platform goes on serving."""

from __future__ import annotations

import json

from trajectories.models import Run

from .test_agent_clis import describe, run_cli

GARBAGE_RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
---
# Objective
Print garbage.

## Step 1: random bytes
```bash
head -c 200000 /dev/urandom; echo
```

## Step 2: NUL characters
```bash
printf 'a\\0b\\0c\\n'; printf '\\0\\0\\0'
```

## Step 3: one long line
```bash
python3 -c "print('x' * 5_000_000)"
```

## Step 4: many lines
```bash
seq 1 200000
```

## Step 5: results
```bash
mkdir -p /app/results && echo done > /app/results/done.txt
```
"""


def test_garbage_output_is_contained_and_stored_clean(alice_client, worker):
    _, summary = run_cli(
        alice_client, "jetty-agent", "off", runbook=GARBAGE_RUNBOOK, timeout_s=120, template_variables={}
    )
    run = Run.objects.get(public_id=summary["run_id"])
    assert run.status in ("succeeded", "failed"), describe(run.public_id)
    if run.status == "failed":
        assert run.error_kind == "user" and run.error, describe(run.public_id)
    total = 0
    for event in run.events.all():
        text = json.dumps(event.payload)
        assert "\\u0000" not in text and "\x00" not in text, f"NUL stored in event {event.seq} {event.kind}"
        total += len(text)
    assert total < 50_000_000, f"{total} bytes of events for one run"
    # The platform still serves: the next run works.
    _, again = run_cli(alice_client, "jetty-agent", "off")
    assert again["status"] == "succeeded", describe(again["run_id"])
