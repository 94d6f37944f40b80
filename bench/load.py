"""Sustained load on the gateway and the run API: error rate, latency percentiles, and each process's memory over
time (a leak shows as growth from the first minute to the last).

One daphne process and one Celery worker (as `make up` runs them) against the configured database (SQLite by
default; set DATABASE_URL/REDIS_URL for PostgreSQL and Redis). C concurrent clients loop for D seconds over a mix:
passthrough chat completions to the offline scripted model (each one recorded as a run), the runs list, one run's
events, and starting an async agent run every so often (so the worker executes sandboxes throughout).

    .venv/bin/python bench/load.py [--seconds 180] [--clients 16]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
WORK = Path(tempfile.mkdtemp(prefix="jetty-bench-load-", dir=ROOT / "var"))
os.environ.setdefault("JETTY_VAR_DIR", str(WORK))

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.core.management import call_command  # noqa: E402

from orgs.models import ApiToken, Org  # noqa: E402
from tests.support import servers  # noqa: E402

AGENT_RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
---
# Objective
Say hello.

## Step 1: hello
```bash
mkdir -p /app/results && echo hello > /app/results/hello.txt
```
"""


def rss_mb(pid: int) -> float:
    """Resident memory of a process and its children (the worker forks sandboxes), in MB."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = Path(f"/proc/{current}/status").read_text()
            total += int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pids += [int(c) for c in children]
        except (OSError, StopIteration):
            continue
    return total / 1024


async def client_loop(base: str, token: str, deadline: float, results: dict[str, list], run_ids: list[str]):
    headers = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=base, headers=headers, timeout=60) as http:
        while time.monotonic() < deadline:
            roll = random.random()
            started = time.perf_counter()
            if roll < 0.70:
                name = "chat"
                body = {"model": "scripted/default", "messages": [{"role": "user", "content": f"hi {roll:.6f}"}]}
                response = await http.post("/v1/chat/completions", json=body)
                if response.status_code == 200:
                    run_ids.append(response.headers.get("x-jetty-run-id", ""))
            elif roll < 0.85:
                name = "runs list"
                response = await http.get("/api/v1/runs", params={"limit": 20})
            elif roll < 0.995:
                name = "run events"
                found = next((r for r in reversed(run_ids[-50:]) if r), None)
                response = await http.get(f"/api/v1/runs/{found}/events" if found else "/api/v1/runs")
            else:
                name = "agent run"
                body = {
                    "model": "scripted/default",
                    "messages": [{"role": "system", "content": AGENT_RUNBOOK}, {"role": "user", "content": "go"}],
                    "jetty": {"runbook": True, "async": True, "network": "off"},
                }
                response = await http.post("/v1/chat/completions", json=body)
            elapsed = (time.perf_counter() - started) * 1000
            ok = response.status_code < 400 or (name == "run events" and response.status_code == 404)
            results.setdefault(name, []).append((elapsed, ok, response.status_code))


async def sample_memory(procs: dict[str, int], deadline: float, samples: list[tuple[float, dict[str, float]]]):
    start = time.monotonic()
    while time.monotonic() < deadline:
        samples.append((time.monotonic() - start, {name: rss_mb(pid) for name, pid in procs.items()}))
        await asyncio.sleep(5)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=180)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument(
        "--rate-limit", choices=["counted", "off"], default="counted", help="off: measure without the limiter"
    )
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "load.json"))
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    org = Org.objects.create(name=f"load-{int(time.time())}")
    _, token = ApiToken.generate(org, name="load")
    env = dict(os.environ)
    port = servers.free_port()
    env.update({"JETTY_PUBLIC_URL": f"http://127.0.0.1:{port}", "JETTY_SANDBOX_BACKEND": "bubblewrap"})
    env["JETTY_GATEWAY_SOCKET"] = str(WORK / "run" / "gw.sock")
    # One token for all clients: counted (its cost measured) but never refused, or the limiter off altogether.
    env["JETTY_RATE_LIMIT_REQUESTS"] = str(10**9) if args.rate_limit == "counted" else "0"
    web = servers.start_daphne(env, WORK / "web.log", port)
    worker = servers.start_celery_worker(env, WORK / "worker.log")
    try:
        results: dict[str, list] = {}
        samples: list[tuple[float, dict[str, float]]] = []
        run_ids: list[str] = []
        deadline = time.monotonic() + args.seconds

        async def drive():
            procs = {"daphne": web.proc.pid, "celery worker": worker.proc.pid}
            loops = [client_loop(web.url, token, deadline, results, run_ids) for _ in range(args.clients)]
            await asyncio.gather(sample_memory(procs, deadline, samples), *loops)

        asyncio.run(drive())
    finally:
        web.stop()
        worker.stop()
    report = {"seconds": args.seconds, "clients": args.clients, "database": env.get("DATABASE_URL", "sqlite")}
    report["rate_limit"] = args.rate_limit
    rows = []
    for name, values in sorted(results.items()):
        latencies = [v[0] for v in values]
        errors = [v for v in values if not v[1]]
        codes: dict[int, int] = {}
        for v in errors:
            codes[v[2]] = codes.get(v[2], 0) + 1
        row = {
            "requests": len(values),
            "per_second": round(len(values) / args.seconds, 1),
            "error_rate": round(len(errors) / len(values), 5),
            "error_codes": codes,
            "p50_ms": round(percentile(latencies, 0.50), 1),
            "p95_ms": round(percentile(latencies, 0.95), 1),
            "p99_ms": round(percentile(latencies, 0.99), 1),
            "max_ms": round(max(latencies), 1),
        }
        report[name] = row
        rows.append((name, row))
    memory = {}
    for proc in ("daphne", "celery worker"):
        first = [s[1][proc] for s in samples if s[0] <= 60]
        last = [s[1][proc] for s in samples if s[0] >= args.seconds - 60]
        memory[proc] = {
            "first_minute_mb": round(statistics.median(first), 1),
            "last_minute_mb": round(statistics.median(last), 1),
            "max_mb": round(max(s[1][proc] for s in samples), 1),
        }
    report["memory"] = memory
    report["samples"] = samples
    report["load_average"] = os.getloadavg()
    Path(args.out).write_text(json.dumps(report, indent=1))
    print(f"{args.clients} clients for {args.seconds:.0f} s against {report['database']}")
    print("| operation | requests | per s | errors | p50 ms | p95 ms | p99 ms | max ms |")
    print("|---|---:|---:|---:|---:|---:|---:|---:|")
    for name, row in rows:
        print(
            f"| {name} | {row['requests']} | {row['per_second']} | {row['error_rate']:.2%} | {row['p50_ms']} |"
            f" {row['p95_ms']} | {row['p99_ms']} | {row['max_ms']} |"
        )
    for proc, m in memory.items():
        first, last, top = m["first_minute_mb"], m["last_minute_mb"], m["max_mb"]
        print(f"{proc}: {first} MB in the first minute, {last} MB in the last (max {top})")


if __name__ == "__main__":
    main()
