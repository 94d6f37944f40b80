"""What the per-token rate limiter costs each request, measured in one run against bare baselines.

- Redis: ``orgs.ratelimit.hit`` (a pipelined INCR + EXPIRE) against a bare Redis PING on the same connection pool.
- Database (no REDIS_URL): ``hit`` (one UPDATE … CASE, one SELECT, in a transaction) against a bare ``SELECT 1``.

    REDIS_URL=redis://127.0.0.1:6379/11 DATABASE_URL=postgresql://… .venv/bin/python bench/ratelimit.py [--calls 5000]
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
os.environ.setdefault("JETTY_VAR_DIR", tempfile.mkdtemp(prefix="jetty-bench-rl-", dir=ROOT / "var"))

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402
from django.core.management import call_command  # noqa: E402
from django.db import connection  # noqa: E402

from orgs import ratelimit  # noqa: E402


def per_call_us(fn, calls: int, repeat: int = 5) -> float:
    """Median over ``repeat`` rounds of the mean time of one call, in microseconds."""
    rounds = []
    for _ in range(repeat):
        started = time.perf_counter()
        for _ in range(calls):
            fn()
        rounds.append((time.perf_counter() - started) / calls * 1e6)
    return statistics.median(rounds)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=5000)
    parser.add_argument("--out", default=str(ROOT / "bench" / "results" / "ratelimit.json"))
    args = parser.parse_args()
    call_command("migrate", verbosity=0)
    rows = {}
    if settings.REDIS_URL:
        client = ratelimit._redis(settings.REDIS_URL)
        rows["redis"] = {
            "hit_us": per_call_us(lambda: ratelimit.hit("bench:redis", 10**9, 60), args.calls),
            "baseline": "PING",
            "baseline_us": per_call_us(client.ping, args.calls),
        }
    redis_url, settings.REDIS_URL = settings.REDIS_URL, ""  # the database counter, as without Redis
    with connection.cursor() as cursor:

        def select_one() -> None:
            cursor.execute("SELECT 1")
            cursor.fetchone()

        rows["database"] = {
            "hit_us": per_call_us(lambda: ratelimit.hit("bench:db", 10**9, 60), args.calls // 5),
            "baseline": "SELECT 1",
            "baseline_us": per_call_us(select_one, args.calls // 5),
        }
    settings.REDIS_URL = redis_url
    report = {"database": connection.vendor, "calls": args.calls, **rows}
    Path(args.out).write_text(json.dumps(report, indent=1))
    for name, row in rows.items():
        print(f"{name}: hit {row['hit_us']:.0f} µs per request, {row['baseline']} {row['baseline_us']:.0f} µs")
    print(json.dumps(report, indent=1))


if __name__ == "__main__":
    main()
