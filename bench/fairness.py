"""Fair sharing: one org floods the platform, another org's calls and runs must not notice much.

Org A sends big trajectory ingests in parallel (3 at a time, 30 MB each, again and again) and queues many agent
runs; meanwhile org B makes chat calls one after another and then starts one agent run. Measured in one run:

- org B's chat p50/p95 idle, then under A's flood (the goal: p50 within 2x of idle);
- how long org B's agent run waits, submitted behind A's backlog, until it is running (the goal: within 5 s);
- what A's ingests and runs got (status codes, how many ran), and that A never held more runs than its limit.

    .venv/bin/python bench/fairness.py [--smoke] [--ingest-mb 30] [--ingests 3] [--runs 40] [--seconds 30] [--workers 2]

Starts its own daphne and Celery workers on a fresh embedded database (SQLite, filesystem broker) unless
DATABASE_URL/REDIS_URL are set. `--smoke` is the seconds-long version the test suite runs (small ingests, few
runs). Writes bench/results/fairness.json (smoke: fairness-smoke.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
WORK = Path(tempfile.mkdtemp(prefix="jetty-bench-fair-", dir=ROOT / "var"))
os.environ["JETTY_VAR_DIR"] = str(WORK)
os.environ["JETTY_SANDBOX_ROOT"] = str(WORK / "sandboxes")
os.environ.setdefault("JETTY_SANDBOX_BACKEND", "bubblewrap")
os.environ.setdefault("JETTY_MAX_BODY_BYTES", str(40 * 1024 * 1024))
# Counted, as in production, but out of reach: org B's calls follow each other as fast as they are answered.
os.environ.setdefault("JETTY_RATE_LIMIT_REQUESTS", "1000000000")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from orgs.models import ApiToken, Org  # noqa: E402
from tests.support import servers  # noqa: E402
from trajectories.models import FINAL_STATUSES, Run, RunStatus  # noqa: E402

RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
---
# Objective
Work a little.

## Step 1: work
```bash
mkdir -p /app/results && sleep {sleep} && echo done > /app/results/done.txt
```
"""


def trajectory(size: int) -> bytes:
    """A finished run as Jetty's trajectory JSON, about ``size`` bytes, with events of ~64 KB each; its id is
    ``RUN_ID``, for ``fresh`` to replace."""
    events = max(1, size // 65_536)
    text = "x" * (size // events - 120)
    doc = {
        "format": "jetty.trajectory",
        "version": 1,
        "run": {"id": RUN_ID, "task": "flood", "status": "succeeded", "created": time.time()},
        "events": [{"kind": "log", "ts": time.time(), "payload": {"message": text}} for _ in range(events)],
    }
    return json.dumps(doc).encode()


RUN_ID = "flood-" + "0" * 24


def fresh(blob: bytes) -> bytes:
    """The trajectory with a new run id, so each ingest is written, not found again (and cheap to make)."""
    return blob.replace(RUN_ID.encode(), f"flood-{time.time_ns():024d}".encode(), 1)


def chat_latencies(http: httpx.Client, seconds: float) -> list[float]:
    """One chat call after another for ``seconds``: each one's latency in ms."""
    out: list[float] = []
    body = {"model": "scripted/default", "messages": [{"role": "user", "content": "hi"}]}
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        started = time.perf_counter()
        response = http.post("/v1/chat/completions", json=body)
        response.raise_for_status()
        out.append((time.perf_counter() - started) * 1000)
    return out


def summary(ms: list[float]) -> dict[str, float]:
    ms = sorted(ms)
    return {
        "calls": len(ms),
        "p50_ms": round(statistics.median(ms), 1),
        "p95_ms": round(ms[min(len(ms) - 1, int(len(ms) * 0.95))], 1),
        "max_ms": round(ms[-1], 1),
    }


def submit_run(http: httpx.Client, sleep: float, tag: str) -> str:
    body = {
        "model": "scripted/default",
        "messages": [{"role": "system", "content": RUNBOOK.format(sleep=sleep)}, {"role": "user", "content": tag}],
        "jetty": {"runbook": True, "async": True, "network": "off", "timeout_s": 120},
    }
    response = http.post("/v1/chat/completions", json=body)
    response.raise_for_status()
    return response.json()["id"]


def started_after(public_id: str, since: float, timeout: float) -> float:
    """Seconds from ``since`` until the run left the queue (or the timeout, if it never did)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        status = Run.objects.filter(public_id=public_id).values_list("status", flat=True).first()
        if status is not None and status != RunStatus.QUEUED:
            return time.monotonic() - since
        time.sleep(0.05)
    return timeout


def most_running(org: Org, stop: threading.Event, seen: list[int]) -> None:
    while not stop.is_set():
        seen.append(Run.objects.filter(org=org, status=RunStatus.RUNNING).count())
        time.sleep(0.2)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="seconds, small sizes: what the test suite runs")
    parser.add_argument("--ingest-mb", type=float, default=30)
    parser.add_argument("--ingests", type=int, default=3, help="org A's ingests in flight at once")
    parser.add_argument("--runs", type=int, default=40, help="agent runs org A queues")
    parser.add_argument("--seconds", type=float, default=30, help="org B's chat calls idle, and again under load")
    parser.add_argument("--workers", type=int, default=2, help="Celery worker processes (solo pool)")
    parser.add_argument("--run-seconds", type=float, default=3, help="how long each of org A's runs works")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.smoke:
        args.ingest_mb, args.runs, args.seconds, args.run_seconds = 2, 6, 3, 2
    out = Path(args.out or ROOT / "bench" / "results" / ("fairness-smoke.json" if args.smoke else "fairness.json"))
    call_command("migrate", verbosity=0)
    (WORK / "sandboxes").mkdir(parents=True, exist_ok=True)
    for path in (WORK, WORK / "sandboxes"):
        path.chmod(0o755)  # the sandbox user must traverse it
    org_a, org_b = Org.objects.create(name="flood"), Org.objects.create(name="quiet")
    token_a, token_b = ApiToken.generate(org_a, name="a")[1], ApiToken.generate(org_b, name="b")[1]
    env = dict(os.environ)
    # Each org gets fewer runs at once than there are worker slots, so another org always finds one free.
    env.setdefault("JETTY_ORG_MAX_CONCURRENT_RUNS", str(max(1, args.workers - 1)))
    port = servers.free_port()
    env.update({"JETTY_PUBLIC_URL": f"http://127.0.0.1:{port}", "JETTY_GATEWAY_SOCKET": str(WORK / "run" / "gw.sock")})
    web = servers.start_daphne(env, WORK / "web.log", port)
    workers = [servers.start_celery_worker(env, WORK / f"worker-{i}.log") for i in range(args.workers)]
    size = int(args.ingest_mb * 1024 * 1024)
    stop = threading.Event()
    ingests: list[tuple[int, float]] = []
    running_counts: list[int] = []
    try:
        a = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token_a}"}, timeout=300)
        b = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token_b}"}, timeout=300)
        chat_latencies(b, 1)  # warm
        idle = chat_latencies(b, args.seconds)
        b_idle_id = submit_run(b, 0, "b idle")
        since = time.monotonic()
        idle_start = started_after(b_idle_id, since, 60)
        blob = trajectory(size)

        def flood(n: int) -> None:
            with httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token_a}"}, timeout=300) as http:
                while not stop.is_set():
                    started = time.perf_counter()
                    response = http.post(
                        "/api/v1/runs/ingest", content=fresh(blob), headers={"Content-Type": "application/json"}
                    )
                    ingests.append((response.status_code, time.perf_counter() - started))
                    if response.status_code == 429:  # as a well-behaved client does
                        time.sleep(float(response.headers.get("Retry-After", "1")))

        a_ids = [submit_run(a, args.run_seconds, f"a {i}") for i in range(args.runs)]
        watcher = threading.Thread(target=most_running, args=(org_a, stop, running_counts), daemon=True)
        watcher.start()
        with ThreadPoolExecutor(args.ingests + 1) as pool:
            for n in range(args.ingests):
                pool.submit(flood, n)
            time.sleep(1)  # the flood is under way
            b_id = submit_run(b, 0, "b under load")
            waited = pool.submit(started_after, b_id, time.monotonic(), 120)
            a_done = Run.objects.filter(public_id__in=a_ids, status__in=FINAL_STATUSES).count()
            loaded = chat_latencies(b, args.seconds)
            loaded_start = waited.result()
            stop.set()
        watcher.join()
    finally:
        stop.set()
        for worker in workers:
            worker.stop()
        web.stop()
    idle_s, loaded_s = summary(idle), summary(loaded)
    report = {
        "smoke": args.smoke,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "broker": "redis" if settings.REDIS_URL else "filesystem",
        "workers": args.workers,
        "org_limits": {
            name: env.get(name, "default")
            for name in ("JETTY_ORG_MAX_CONCURRENT_RUNS", "JETTY_ORG_MAX_INGEST_BYTES", "JETTY_ORG_MAX_EVENTS_PER_RUN")
        },
        "org_a": {
            "ingest_mb": args.ingest_mb,
            "ingests_in_parallel": args.ingests,
            "ingests": len(ingests),
            "ingest_statuses": sorted({code for code, _ in ingests}),
            "ingests_stored": sum(code == 201 for code, _ in ingests),
            "ingests_refused_429": sum(code == 429 for code, _ in ingests),
            "ingest_p50_s": round(statistics.median([s for c, s in ingests if c == 201] or [0]), 2),
            "runs_queued": args.runs,
            "runs_final_when_b_started": a_done,
            "most_running_at_once": max(running_counts, default=0),
        },
        "org_b": {
            "chat_idle": idle_s,
            "chat_under_load": loaded_s,
            "chat_p50_ratio": round(loaded_s["p50_ms"] / idle_s["p50_ms"], 2),
            "run_start_idle_s": round(idle_start, 2),
            "run_start_under_load_s": round(loaded_start, 2),
        },
    }
    report["goals_met"] = report["org_b"]["chat_p50_ratio"] <= 2 and loaded_start <= 5  # type: ignore[index]
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
