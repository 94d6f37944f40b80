"""Workflow engine benchmark: what checkpointing every step costs, and a 20-way fan-out, measured in one run.

1. A chain of N text steps (each reads the previous step's output through a path and fills a template), run by
   the engine in-process (claim, a StepRun row and events per step, outputs committed with the cursor) against
   the same step classes called bare in a loop with a dict for context.
2. A 20-way fan-out of a one-step child workflow through a real Celery worker process (child runs started,
   awaited, fanned in), against the same 20 child runs started one after another.

    .venv/bin/python bench/workflows.py [--steps 50] [--repeat 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")
WORK = Path(tempfile.mkdtemp(prefix="jetty-bench-wf-", dir=ROOT / "var"))
os.environ.setdefault("JETTY_VAR_DIR", str(WORK))

import django  # noqa: E402

django.setup()

from django.core.management import call_command  # noqa: E402

from orgs.auth import Principal  # noqa: E402
from orgs.models import Collection, Org  # noqa: E402
from runs.stored import push_version, start_task_run, start_workflow  # noqa: E402
from runs.workflows.engine import advance  # noqa: E402
from runs.workflows.paths import resolve_params  # noqa: E402
from runs.workflows.registry import StepContext, step_types  # noqa: E402
from tests.support import servers  # noqa: E402
from trajectories.models import FINAL_STATUSES, Run  # noqa: E402


def chain(n: int) -> dict:
    configs = {"s0": {"type": "text_template", "params": {"template": "start {{ init_params.word }}"}}}
    for i in range(1, n):
        configs[f"s{i}"] = {"type": "text_template", "params": {"template": f"{{{{ s{i - 1}.outputs.text }}}} {i}"}}
    return {"steps": list(configs), "step_configs": configs}


def engine_ms(principal: Principal, definition: dict) -> float:
    run = start_workflow(principal, definition, {"word": "go"}, task="bench", collection_id=None, secrets={}, env={})
    started = time.perf_counter()
    advance(run.pk)  # the queued Celery message is never consumed: this process executes it
    elapsed = (time.perf_counter() - started) * 1000
    assert Run.objects.get(pk=run.pk).status == "succeeded"
    return elapsed


def bare_ms(run: Run, definition: dict) -> float:
    started = time.perf_counter()
    values: dict = {"init_params": {"word": "go"}, "env": {}}
    for name in definition["steps"]:
        config = definition["step_configs"][name]
        cls = step_types()[config["type"]]
        params = config["params"]  # text_template's template is a raw param, as in the engine
        cls.check_params(params)
        ctx = StepContext(run=run, step_name=name, visit=1, values=values, state={}, secrets={}, env={})
        outputs = cls().run(ctx, resolve_params({}, values) | params)
        values[name] = {"inputs": params, "outputs": outputs}
    return (time.perf_counter() - started) * 1000


def wait(public_id: str) -> Run:
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        run = Run.objects.get(public_id=public_id)
        if run.status in FINAL_STATUSES:
            return run
        time.sleep(0.02)
    raise TimeoutError(public_id)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    org = Org.objects.create(name="bench")
    collection = Collection.objects.create(org=org, name="bench")
    principal = Principal(org=org, token=None, collection=collection, prefix="bench")
    definition = chain(args.steps)
    rows = []

    engine = [engine_ms(principal, definition) for _ in range(args.repeat)]
    probe = Run.objects.filter(kind="workflow").first()
    assert probe is not None
    bare = [bare_ms(probe, definition) for _ in range(args.repeat)]
    per_engine, per_bare = statistics.median(engine) / args.steps, statistics.median(bare) / args.steps
    rows.append((f"one step of a {args.steps}-step chain (ms)", per_engine, per_bare))

    child = {
        "steps": ["shout"],
        "step_configs": {"shout": {"type": "text_template", "params": {"template": "{{ init_params.item }}!"}}},
    }
    push_version(principal, collection, "shout", kind="workflow", workflow=child)
    each = {"items": [f"w{i}" for i in range(20)], "task": "shout"}
    gather = {"runs_path": "each.outputs.runs", "field": "outputs.text"}
    fan = {
        "steps": ["each", "gather"],
        "step_configs": {
            "each": {"type": "list_emit_await", "params": each},
            "gather": {"type": "extract_from_trajectories", "params": gather},
        },
    }
    push_version(principal, collection, "fan", kind="workflow", workflow=fan)
    worker = servers.start_celery_worker(dict(os.environ), WORK / "worker.log")
    try:
        from runs.models import Task

        fan_task, shout_task = Task.objects.get(name="fan"), Task.objects.get(name="shout")
        wait(start_task_run(principal, shout_task, {"item": "warm"}).public_id)
        fanned, serial = [], []
        for _ in range(args.repeat):
            started = time.perf_counter()
            run = wait(start_task_run(principal, fan_task, {}).public_id)
            assert run.status == "succeeded" and len(run.metadata["outputs"]["items"]) == 20, run.error
            fanned.append((time.perf_counter() - started) * 1000)
            started = time.perf_counter()
            for i in range(20):
                assert wait(start_task_run(principal, shout_task, {"item": f"w{i}"}).public_id).status == "succeeded"
            serial.append((time.perf_counter() - started) * 1000)
        rows.append(
            (
                "20-way fan-out and fan-in, one solo worker (total ms)",
                statistics.median(fanned),
                statistics.median(serial),
            )
        )
    finally:
        worker.stop()

    lines = [
        "| measurement | Jetty (median) | bare (median) | added | ratio |",
        "|---|---:|---:|---:|---:|",
        *(
            f"| {name} | {ours:.2f} | {bare:.2f} | {ours - bare:+.2f} | {ours / bare:.2f}x |"
            for name, ours, bare in rows
        ),
    ]
    notes = (
        f"\nEngine: the chain run by the engine in-process (SQLite, {args.repeat} repeats) against the step classes "
        "called bare; the added time is the checkpoint of each step (its StepRun row, inputs, outputs, cursor and two "
        "events, each committed). Fan-out: bare is the same 20 child runs started and awaited one after another "
        "through the same worker (`--pool=solo`).\n"
    )
    out = ROOT / "bench" / "results" / "workflows.md"
    out.write_text("\n".join(lines) + "\n" + notes)
    print("\n".join(lines))


if __name__ == "__main__":
    main()
