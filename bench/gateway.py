"""Passthrough gateway benchmark: Jetty vs LiteLLM's proxy vs calling the upstream directly, in one run.

Each target sits in front of the same fast fake OpenAI upstream on loopback (tests/support/fake_openai.py). For
non-stream and 20-chunk stream requests at concurrency 1, 8 and 32 it measures requests/s, latency p50/p99,
time to first byte (streams) and the server's CPU time per request (user+system of its process tree, the
steadiest figure on a noisy 2-core machine). Jetty runs as one daphne process, recording every call; the
proxy runs with one worker.

    make bench                      # or: .venv/bin/python bench/gateway.py --seconds 5
Needs .venv-bench with LiteLLM's proxy (bench/requirements-litellm-proxy.txt); without it the proxy is skipped.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import aiohttp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.support import servers  # noqa: E402

BENCH_VENV = ROOT / ".venv-bench"
CONCURRENCY = (1, 8, 32)
PROXY_KEY = "sk-bench-" + os.urandom(16).hex()


def tree_cpu_seconds(pid: int) -> float:
    """User+system CPU of a process and its descendants (threads included)."""
    total = 0.0
    tick = os.sysconf("SC_CLK_TCK")
    pending = [pid]
    while pending:
        current = pending.pop()
        try:
            fields = Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
        except FileNotFoundError:
            continue
        pending.extend(int(c) for c in children)
    return total


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


async def load(url: str, headers: dict, model: str, stream: bool, concurrency: int, seconds: float, pid: int | None):
    body = json.dumps({"model": model, "messages": [{"role": "user", "content": "benchmark"}], "stream": stream})
    latencies: list[float] = []
    ttfbs: list[float] = []
    errors = 0
    connector = aiohttp.TCPConnector(limit=0)
    async with aiohttp.ClientSession(connector=connector, headers=headers) as session:

        async def one() -> None:
            nonlocal errors
            start = time.perf_counter()
            async with session.post(url, data=body) as response:
                if stream:
                    first = None
                    async for _ in response.content.iter_any():
                        first = first or time.perf_counter()
                    ttfbs.append(((first or time.perf_counter()) - start) * 1000)
                else:
                    await response.read()
                if response.status != 200:
                    errors += 1
            latencies.append((time.perf_counter() - start) * 1000)

        for _ in range(max(20, concurrency * 2)):  # warm connections and caches
            await one()
        latencies.clear()
        ttfbs.clear()
        cpu0 = tree_cpu_seconds(pid) if pid else 0.0
        started = time.perf_counter()
        deadline = started + seconds

        async def worker() -> None:
            while time.perf_counter() < deadline:
                await one()

        await asyncio.gather(*(worker() for _ in range(concurrency)))
        elapsed = time.perf_counter() - started
        cpu = (tree_cpu_seconds(pid) - cpu0) if pid else 0.0
    count = len(latencies)
    return {
        "requests": count,
        "errors": errors,
        "rps": count / elapsed,
        "p50_ms": statistics.median(latencies),
        "p99_ms": percentile(latencies, 99),
        "ttfb_p50_ms": statistics.median(ttfbs) if ttfbs else None,
        "cpu_ms_per_req": cpu / count * 1000 if pid else None,
    }


def start_jetty(upstream: str, workdir: Path, log: Path) -> tuple[servers.Process, str]:
    env = {**os.environ, "JETTY_VAR_DIR": str(workdir), "LITELLM_LOCAL_MODEL_COST_MAP": "True"}
    env["JETTY_RATE_LIMIT_REQUESTS"] = str(10**9)  # requests are counted (its cost is measured), never refused
    env.pop("DATABASE_URL", None) if os.environ.get("BENCH_SQLITE") else None
    python = str(ROOT / ".venv/bin/python")
    subprocess.run([python, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    setup = (
        "import django; django.setup()\n"
        "from orgs.models import Org, ApiToken, ProviderKey\n"
        "org, _ = Org.objects.get_or_create(name='bench')\n"
        "ProviderKey.objects.filter(org=org).delete()\n"
        f"k = ProviderKey(org=org, provider='openai', api_base='{upstream}/v1'); k.set_key('sk-bench'); k.save()\n"
        "print(ApiToken.generate(org)[1])\n"
    )
    token = (
        subprocess.run(
            [python, "-c", setup],
            cwd=ROOT,
            env={**env, "DJANGO_SETTINGS_MODULE": "jetty_site.settings"},
            check=True,
            capture_output=True,
            text=True,
        )
        .stdout.strip()
        .splitlines()[-1]
    )
    return servers.start_daphne(env, log), token


def start_litellm_proxy(upstream: str, workdir: Path, log: Path) -> servers.Process | None:
    binary = BENCH_VENV / "bin/litellm"
    if not binary.exists():
        print("LiteLLM proxy not installed in .venv-bench: skipping it", file=sys.stderr)
        return None
    config = workdir / "litellm.yaml"
    config.write_text(
        "model_list:\n"
        "  - model_name: openai/fake\n"
        f"    litellm_params: {{model: openai/fake, api_base: '{upstream}/v1', api_key: sk-bench}}\n"
        "litellm_settings: {drop_params: false, set_verbose: false}\n"
    )
    port = servers.free_port()
    env = {
        **os.environ,
        "LITELLM_MASTER_KEY": PROXY_KEY,
        "LITELLM_LOCAL_MODEL_COST_MAP": "True",
        "LITELLM_LOG": "ERROR",
        "DISABLE_SCHEMA_UPDATE": "true",
    }
    env.pop("DATABASE_URL", None)
    proc = servers.spawn([str(binary), "--config", str(config), "--port", str(port), "--num_workers", "1"], env, log)
    url = f"http://127.0.0.1:{port}"
    servers.wait_until(lambda: aiohttp_ok(f"{url}/health/liveliness"), 120, "litellm proxy", proc, log)
    return servers.Process(proc, log, url)


def aiohttp_ok(url: str) -> bool:
    import urllib.request

    with urllib.request.urlopen(url, timeout=2) as response:
        return response.status == 200


def table(results: list[dict]) -> str:
    lines = [
        "| target | mode | conc | req/s | p50 ms | p99 ms | TTFB p50 ms | server CPU ms/req | errors |",
        "|---|---|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        fmt = lambda v, d=1: "-" if v is None else f"{v:.{d}f}"  # noqa: E731
        lines.append(
            f"| {r['target']} | {r['mode']} | {r['concurrency']} | {r['rps']:.0f} | {fmt(r['p50_ms'])} | "
            f"{fmt(r['p99_ms'])} | {fmt(r['ttfb_p50_ms'])} | {fmt(r['cpu_ms_per_req'], 2)} | {r['errors']} |"
        )
    return "\n".join(lines)


def summary(results: list[dict]) -> str:
    def cell(target, mode, conc):
        return next((r for r in results if (r["target"], r["mode"], r["concurrency"]) == (target, mode, conc)), None)

    def best(target: str, mode: str) -> float:
        return max((r["rps"] for r in results if r["target"] == target and r["mode"] == mode), default=0)

    def cpu(target: str, mode: str) -> float:
        values = [r["cpu_ms_per_req"] for r in results if r["target"] == target and r["mode"] == mode]
        return statistics.median(values or [0])

    out = []
    for mode in ("non-stream", "stream"):
        jetty_c1, direct_c1, proxy_c1 = (cell(t, mode, 1) for t in ("jetty", "direct", "litellm-proxy"))
        line = f"- {mode}: Jetty adds {jetty_c1['p50_ms'] - direct_c1['p50_ms']:.1f} ms p50 at concurrency 1"
        if proxy_c1:
            jetty_rps, proxy_rps = best("jetty", mode), best("litellm-proxy", mode)
            jetty_cpu, proxy_cpu = cpu("jetty", mode), cpu("litellm-proxy", mode)
            line += (
                f" (proxy adds {proxy_c1['p50_ms'] - direct_c1['p50_ms']:.1f} ms); peak req/s Jetty {jetty_rps:.0f}"
                f" vs proxy {proxy_rps:.0f} ({jetty_rps / proxy_rps:.1f}x); server CPU/req Jetty {jetty_cpu:.2f} ms"
                f" vs proxy {proxy_cpu:.2f} ms ({jetty_cpu / proxy_cpu:.2f} of it)"
            )
        out.append(line)
    return "\n".join(out)


async def run_all(targets: dict, seconds: float) -> list[dict]:
    results = []
    for mode in ("non-stream", "stream"):
        for concurrency in CONCURRENCY:
            for name, (url, headers, pid) in targets.items():
                cell = await load(
                    url,
                    headers,
                    "openai/fake" if name != "direct" else "fake",
                    mode == "stream",
                    concurrency,
                    seconds,
                    pid,
                )
                cell.update(target=name, mode=mode, concurrency=concurrency)
                print(json.dumps(cell), flush=True)
                results.append(cell)
    return results


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=5.0, help="measured seconds per cell")
    parser.add_argument("--out", default=str(ROOT / "bench/results/gateway.md"))
    args = parser.parse_args()
    workdir = Path(tempfile.mkdtemp(prefix="jetty-bench-"))
    upstream = servers.start_fake_upstream(workdir / "upstream.log")
    jetty, token = start_jetty(upstream.url, workdir, workdir / "jetty.log")
    proxy = start_litellm_proxy(upstream.url, workdir, workdir / "proxy.log")
    try:
        targets = {
            "direct": (f"{upstream.url}/v1/chat/completions", {"content-type": "application/json"}, None),
            "jetty": (
                f"{jetty.url}/v1/chat/completions",
                {"authorization": f"Bearer {token}", "content-type": "application/json"},
                jetty.proc.pid,
            ),
        }
        if proxy:
            targets["litellm-proxy"] = (
                f"{proxy.url}/v1/chat/completions",
                {"authorization": f"Bearer {PROXY_KEY}", "content-type": "application/json"},
                proxy.proc.pid,
            )
        results = asyncio.run(run_all(targets, args.seconds))
    finally:
        for process in (jetty, proxy, upstream):
            if process:
                process.stop()
    report = f"{table(results)}\n\n{summary(results)}\n"
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(report)
    Path(args.out).with_suffix(".json").write_text(json.dumps(results, indent=1))
    print(report)


if __name__ == "__main__":
    main()
