"""The contract check's cost: how much of a one-turn agent run the platform's own check of the runbook takes.

Each run does a runbook of one step that writes its outputs, with a REQUIRED OUTPUT FILES table, a validation
report and a Final Checklist script; the platform then checks all three (runs/contract.py), the script in the
sandbox. Measured per run, in the same run: the check's own time (``contract.duration_ms``, from the start of the
check to its verdict) against the run's whole time (queued to final). The goal: under 5% of the run.

    .venv/bin/python bench/contract.py [--smoke] [--runs 5] [--agents jetty-agent,claude-code]
                                       [--backends bubblewrap,docker]

Starts its own daphne and Celery worker on a fresh embedded database (SQLite, filesystem broker) unless
DATABASE_URL/REDIS_URL are set. ``--smoke`` is the seconds-long version the test suite runs (one jetty-agent run in
bubblewrap). Writes bench/results/contract.json (smoke: contract-smoke.json).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
(ROOT / "var").mkdir(exist_ok=True)
WORK = Path(tempfile.mkdtemp(prefix="jetty-bench-contract-", dir=ROOT / "var"))
os.environ["JETTY_VAR_DIR"] = str(WORK)
os.environ["JETTY_SANDBOX_ROOT"] = str(WORK / "sandboxes")

import django  # noqa: E402

django.setup()

import httpx  # noqa: E402
from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402

from orgs.models import ApiToken, Org  # noqa: E402
from tests.support import servers  # noqa: E402
from trajectories.models import FINAL_STATUSES, Run  # noqa: E402

RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
---
# Objective
Write a greeting and a report.

## REQUIRED OUTPUT FILES
| File | Description |
|------|-------------|
| `{{results_dir}}/greeting.txt` | the greeting |
| `{{results_dir}}/summary.md` | summary |
| `{{results_dir}}/validation_report.json` | the report |

## Step 1: work
```bash
mkdir -p /app/results && echo hello > /app/results/greeting.txt && echo '{"version": "1.0.0", "overall_passed": true, \
"stages": [{"name": "greet", "passed": true, "message": "ok"}], "results": {"pass": 1, "partial": 0, "fail": 0}, \
"output_files": ["greeting.txt"]}' > /app/results/validation_report.json
```

## Final Checklist
### Verification Script
```bash
for f in greeting.txt summary.md validation_report.json; do
  if [ -s "/app/results/$f" ]; then echo "PASS: $f"; else echo "FAIL: $f"; fi
done
```
"""


def one_run(http: httpx.Client, agent: str) -> Run:
    response = http.post(
        "/v1/chat/completions",
        json={
            "model": "scripted/default",
            "messages": [{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "go"}],
            "jetty": {"runbook": True, "agent": agent, "network": "off"},
        },
    )
    response.raise_for_status()
    run = Run.objects.get(public_id=response.json()["jetty"]["run_id"])
    if run.status not in FINAL_STATUSES or run.status != "succeeded" or not run.contract:
        raise SystemExit(f"run {run.public_id} ended {run.status}: {run.error}")
    return run


def measure(http: httpx.Client, agent: str, runs: int) -> dict[str, float]:
    one_run(http, agent)  # warm: the first run of a worker loads what later runs share
    checks, totals = [], []
    for _ in range(runs):
        run = one_run(http, agent)
        assert run.duration_s is not None and run.contract is not None
        checks.append(float(run.contract["duration_ms"]))
        totals.append(run.duration_s * 1000)
    ratios = [c / t for c, t in zip(checks, totals, strict=True)]
    return {
        "runs": runs,
        "check_ms_p50": round(statistics.median(checks), 1),
        "run_ms_p50": round(statistics.median(totals), 1),
        "share_p50_pct": round(100 * statistics.median(ratios), 2),
        "share_max_pct": round(100 * max(ratios), 2),
    }


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--smoke", action="store_true", help="seconds: what the test suite runs")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--agents", default="jetty-agent,claude-code")
    parser.add_argument("--backends", default="bubblewrap,docker")
    parser.add_argument("--out", default="")
    args = parser.parse_args()
    if args.smoke:
        args.runs, args.agents, args.backends = 1, "jetty-agent", "bubblewrap"
    out = Path(args.out or ROOT / "bench" / "results" / ("contract-smoke.json" if args.smoke else "contract.json"))
    call_command("migrate", verbosity=0)
    (WORK / "sandboxes").mkdir(parents=True, exist_ok=True)
    for path in (WORK, WORK / "sandboxes"):
        path.chmod(0o755)  # the sandbox user must traverse it
    org = Org.objects.create(name="bench")
    token = ApiToken.generate(org, name="bench")[1]
    port = servers.free_port()
    env = {
        **os.environ,
        "JETTY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "JETTY_GATEWAY_SOCKET": str(WORK / "run" / "gw.sock"),
    }
    web = servers.start_daphne(env, WORK / "web.log", port)
    results: dict[str, dict[str, dict[str, float]]] = {}
    try:
        http = httpx.Client(base_url=web.url, headers={"Authorization": f"Bearer {token}"}, timeout=600)
        for backend in args.backends.split(","):
            worker = servers.start_celery_worker(
                {**env, "JETTY_SANDBOX_BACKEND": backend}, WORK / f"worker-{backend}-{time.time():.0f}.log"
            )
            try:
                results[backend] = {agent: measure(http, agent, args.runs) for agent in args.agents.split(",")}
            finally:
                worker.stop()
    finally:
        web.stop()
    shares = [m["share_p50_pct"] for by_agent in results.values() for m in by_agent.values()]
    report = {
        "smoke": args.smoke,
        "database": settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1],
        "results": results,
        "goal": "the check under 5% of a one-turn run (median)",
        "goal_met": max(shares) < 5,
    }
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=1))
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
