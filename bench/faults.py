"""Faults under load: many agent runs and workflows in flight on two Celery workers while the workers are
SIGKILLed and restarted and sandboxes are killed from outside (and, with --restart-services, Redis and PostgreSQL
are restarted). Each workflow runs an agent step, fans out to two child workflows with an agent step each, and
fans in. Afterwards every run (agent, workflow, child) must be in a final state, every run's events gap-free
(1..last_seq) with one final state event, and no sandbox left behind. Prints the counts.

    .venv/bin/python bench/faults.py [--runs 40] [--workflows 10] [--kill-every 12]

Uses DATABASE_URL/REDIS_URL when set (PostgreSQL and Redis, as in production); the embedded defaults otherwise.
The benchmark process plays Celery beat: it runs the sweeper every few seconds.
"""

from __future__ import annotations

import argparse
import json
import os
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
WORK = Path(tempfile.mkdtemp(prefix="jetty-bench-faults-", dir=ROOT / "var"))
os.environ.setdefault("JETTY_VAR_DIR", str(WORK))
os.environ["JETTY_SANDBOX_ROOT"] = str(WORK / "sandboxes")
os.environ["JETTY_RUN_STALLED_S"] = "6"
os.environ["JETTY_QUEUED_RESEND_S"] = "20"  # a queue lost with Redis is sent again after 20 s, not 10 minutes
os.environ["JETTY_SANDBOX_BACKEND"] = "bubblewrap"

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db.models import Count, Max  # noqa: E402

from orgs.auth import Principal  # noqa: E402
from orgs.models import ApiToken, Collection, Org  # noqa: E402
from runs.models import Job  # noqa: E402
from runs.stored import push_version  # noqa: E402
from runs.tasks import sweep_runs  # noqa: E402
from tests.support import servers  # noqa: E402
from trajectories.models import FINAL_STATUSES, Event, Run  # noqa: E402

RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
---
# Objective
Work a little, slowly.

## Step 1: start
```bash
mkdir -p /app/results && echo start > /app/results/log.txt
```

## Step 2: wait
```bash
sleep 2 && echo waited >> /app/results/log.txt
```

## Step 3: finish
```bash
sleep 1 && echo done >> /app/results/log.txt && cat /app/results/log.txt
```
"""


def agent_step(allow_failure: bool = True) -> dict:
    params = {"runbook": RUNBOOK, "network": "off", "timeout_s": 120, "allow_failure": allow_failure}
    return {"type": "runbook", "params": params}


def push_workflows(org: Org) -> Collection:
    """A workflow that works, fans out to two child workflows and fans in; each agent step may be a killed one."""
    collection = Collection.objects.create(org=org, name="faults")
    principal = Principal(org=org, token=None, collection=collection, prefix="bench")
    child = {"steps": ["work"], "step_configs": {"work": agent_step()}}
    push_version(principal, collection, "faults-child", kind="workflow", workflow=child)
    fan = {"items": ["a", "b"], "task": "faults-child", "allow_failures": True}
    parent = {
        "steps": ["work", "fan", "done"],
        "step_configs": {
            "work": agent_step(),
            "fan": {"type": "list_emit_await", "params": fan},
            "done": {"type": "text_template", "params": {"template": "{{ fan.outputs.succeeded }} children succeeded"}},
        },
    }
    push_version(principal, collection, "faults-wf", kind="workflow", workflow=parent)
    return collection


def sandbox_pids() -> list[int]:
    """Processes running inside this benchmark's sandboxes (bubblewrap's children)."""
    found = subprocess.run(["pgrep", "-f", f"bwrap.*{WORK / 'sandboxes'}"], capture_output=True, text=True)
    return [int(p) for p in found.stdout.split()]


def restart_redis() -> None:
    subprocess.run(["redis-cli", "-h", "127.0.0.1", "shutdown", "nosave"], capture_output=True)
    time.sleep(1)
    subprocess.run(
        [
            "redis-server",
            "--daemonize",
            "yes",
            "--bind",
            "127.0.0.1",
            "--port",
            "6379",
            "--save",
            "",
            "--appendonly",
            "no",
        ],
        check=True,
        capture_output=True,
    )


def restart_postgres() -> None:
    version = sorted(os.listdir("/etc/postgresql"))[-1]
    subprocess.run(["pg_ctlcluster", "--skip-systemctl-redirect", version, "main", "restart"], check=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--runs", type=int, default=40)
    parser.add_argument("--workflows", type=int, default=10, help="workflows, each with three agent runs in it")
    parser.add_argument("--kill-every", type=float, default=12, help="seconds between worker SIGKILLs")
    parser.add_argument("--timeout", type=float, default=600)
    parser.add_argument("--restart-services", action="store_true", help="restart Redis and PostgreSQL mid-load")
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "faults.json"))
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    (WORK / "sandboxes").mkdir(parents=True, exist_ok=True)
    os.chmod(WORK, 0o755)
    os.chmod(WORK / "sandboxes", 0o755)
    org = Org.objects.create(name=f"faults-{int(time.time())}")
    _, token = ApiToken.generate(org, name="faults")
    push_workflows(org)
    env = dict(os.environ)
    port = servers.free_port()
    env.update({"JETTY_PUBLIC_URL": f"http://127.0.0.1:{port}", "JETTY_GATEWAY_SOCKET": str(WORK / "run" / "gw.sock")})
    web = servers.start_daphne(env, WORK / "web.log", port)
    workers = [servers.start_celery_worker(env, WORK / f"worker-{i}.log") for i in range(2)]
    kills, sandbox_kills, restarts = 0, 0, 0
    service_restarts: list[str] = []
    started = time.monotonic()
    try:
        with httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token}"}, timeout=60) as http:
            for i in range(args.runs):
                body = {
                    "model": "scripted/default",
                    "messages": [{"role": "system", "content": RUNBOOK}, {"role": "user", "content": f"go {i}"}],
                    "jetty": {"runbook": True, "async": True, "network": "off", "timeout_s": 120},
                }
                response = http.post("/v1/chat/completions", json=body)
                response.raise_for_status()
            for i in range(args.workflows):
                response = http.post("/api/v1/run/faults/faults-wf", json={"init_params": {"n": i}})
                response.raise_for_status()
        last_kill = last_sweep = time.monotonic()
        while time.monotonic() - started < args.timeout:
            if Run.objects.filter(org=org).exclude(status__in=FINAL_STATUSES).count() == 0:
                break
            now = time.monotonic()
            if now - last_kill > args.kill_every:
                victim = random.randrange(len(workers))
                workers[victim].proc.send_signal(signal.SIGKILL)
                workers[victim].proc.wait()
                kills += 1
                workers[victim] = servers.start_celery_worker(env, WORK / f"worker-{victim}-{kills}.log")
                restarts += 1
                last_kill = now
            if random.random() < 0.15:
                pids = sandbox_pids()
                if pids:
                    os.kill(random.choice(pids), signal.SIGKILL)
                    sandbox_kills += 1
            if args.restart_services and not service_restarts and now - started > 15:
                restart_redis()
                service_restarts.append(f"redis at {now - started:.0f} s")
            if args.restart_services and len(service_restarts) == 1 and now - started > 30:
                restart_postgres()
                service_restarts.append(f"postgresql at {now - started:.0f} s")
            if now - last_sweep > 3:
                try:
                    sweep_runs()
                except Exception as exc:  # the database may be restarting: the next sweep will do
                    print(f"sweep failed: {exc}", file=sys.stderr)
                    from django.db import connection

                    connection.close()
                last_sweep = now
            time.sleep(0.5)
        # Let the sweeper clear what the last kills left behind.
        for _ in range(10):
            sweep_runs()
            time.sleep(1)
    finally:
        for worker in workers:
            worker.stop()
        web.stop()
    runs = Run.objects.filter(org=org)
    statuses = Counter(runs.values_list("status", flat=True))
    by_kind = {
        f"{kind} runs{' (workflow children)' if child else ''}": dict(
            Counter(runs.filter(kind=kind, parent__isnull=not child).values_list("status", flat=True))
        )
        for kind in ("agent", "workflow")
        for child in (False, True)
    }
    gaps = doubled = 0
    for run in runs.annotate(n=Count("events"), top=Max("events__seq")):
        gaps += run.n != run.top or run.top != run.last_seq
        finals = run.events.filter(kind="run.state", payload__status__in=sorted(FINAL_STATUSES)).count()
        doubled += finals != 1
    retried = Job.objects.filter(run__in=runs, attempts__gt=1).count()
    # Which worker process took each run first: the queue drained by both in parallel.
    takers = Counter(
        e.payload.get("worker", "")
        for e in Event.objects.filter(run__in=runs, kind="run.state", payload__status="running", payload__attempt=1)
    )
    leftovers = [p.name for p in (WORK / "sandboxes").iterdir()] if (WORK / "sandboxes").exists() else []
    report = {
        "runs": runs.count(),
        "final": sum(statuses[s] for s in FINAL_STATUSES),
        "statuses": dict(statuses),
        "statuses_by_kind": {k: v for k, v in by_kind.items() if v},
        "worker_sigkills": kills,
        "sandbox_kills": sandbox_kills,
        "service_restarts": service_restarts,
        "runs_retried_after_a_kill": retried,
        "runs_started_per_worker_process": dict(takers),
        "storage": f"S3 at {env.get('S3_ENDPOINT_URL')}" if env.get("S3_BUCKET") else "local files",
        "runs_with_event_gaps": gaps,
        "runs_without_exactly_one_final_event": doubled,
        "sandboxes_left_behind": len(leftovers),
        "seconds": round(time.monotonic() - started, 1),
        "database": env.get("DATABASE_URL", "sqlite"),
    }
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
