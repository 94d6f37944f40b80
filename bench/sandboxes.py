"""Sandbox and agent-run benchmark: platform overhead against the bare figures, measured in one run.

1. Sandbox create + run `true` + destroy, per backend, against the bare engine call: `bwrap … true` and
   `docker run --rm` of the same image (through the SDK).
2. A one-turn run end to end (API → Celery → sandbox → jetty-agent → gateway → artifacts → answer) against the
   same agent started bare in the same kind of sandbox, calling the gateway directly.
3. 20 concurrent runs on this machine: all must finish; runs per minute.

    .venv/bin/python bench/sandboxes.py [--repeat 15] [--concurrent 20]
Needs root (cgroups, the sandbox user), bubblewrap, and for Docker `scripts/dockerd` + `scripts/build-images`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "jetty_site.settings")
WORK = Path(tempfile.mkdtemp(prefix="jetty-bench-sbx-", dir=ROOT / "var"))
WORK.chmod(0o755)  # the sandbox user must traverse it
os.environ.setdefault("JETTY_VAR_DIR", str(WORK))
os.environ.pop("DATABASE_URL", None) if os.environ.get("BENCH_SQLITE") else None

import django  # noqa: E402

django.setup()

from django.conf import settings  # noqa: E402

from runs.sandboxes import Limits, SandboxSpec, create_sandbox  # noqa: E402
from runs.sandboxes.docker import client, engine_answers  # noqa: E402
from tests.support import servers  # noqa: E402

ONE_TURN = "# Objective\nOne step.\n\n```bash\necho done > /app/results/done.txt\n```\n"


def timed(fn, repeat: int) -> list[float]:
    fn()  # warm
    out = []
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        out.append((time.perf_counter() - started) * 1000)
    return out


def sandbox_cycle(backend: str) -> None:
    sandbox = create_sandbox(SandboxSpec(name=f"bench-{time.time_ns()}", limits=Limits(wall_s=60)), backend=backend)
    try:
        outcome = sandbox.start(["true"]).wait()
        assert outcome.exit_code == 0, outcome
    finally:
        sandbox.destroy()


def bare_bwrap() -> None:
    subprocess.run(
        [
            "bwrap",
            "--ro-bind",
            "/usr",
            "/usr",
            "--symlink",
            "usr/bin",
            "/bin",
            "--symlink",
            "usr/lib",
            "/lib",
            "--symlink",
            "usr/lib64",
            "/lib64",
            "--proc",
            "/proc",
            "--dev",
            "/dev",
            "--unshare-all",
            "--die-with-parent",
            "true",
        ],
        check=True,
    )


def bare_docker() -> None:
    client(settings.JETTY_DOCKER_HOST).containers.run(
        f"jetty/general:{settings.JETTY_IMAGE_VERSION}", "true", remove=True, network_mode="none"
    )


def post(url: str, token: str, body: dict) -> dict:
    request = urllib.request.Request(
        url, json.dumps(body).encode(), {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=600) as response:
        return json.loads(response.read())


def platform_run(url: str, token: str, **jetty) -> dict:
    return post(
        f"{url}/v1/chat/completions",
        token,
        {
            "model": "scripted/default",
            "messages": [{"role": "system", "content": ONE_TURN}, {"role": "user", "content": "go"}],
            "jetty": {"runbook": True, "agent": "jetty-agent", **jetty},
        },
    )


def bare_agent(backend: str, url: str, token: str) -> None:
    """jetty-agent in a fresh sandbox of the same backend, talking to the gateway directly (no queue, no DB)."""
    from runs.agents import JettyAgent, Mission

    sandbox = create_sandbox(
        SandboxSpec(name=f"bench-bare-{time.time_ns()}", limits=Limits(wall_s=120)), backend=backend
    )
    try:
        launch = JettyAgent().launch(
            Mission(
                runbook=ONE_TURN, instruction="go", model="scripted/default", gateway_url=f"{url}/v1", run_token=token
            ),
            sandbox.home,
        )
        outcome = sandbox.start(launch.argv, launch.env).wait()
        assert outcome.exit_code == 0 and (sandbox.results / "done.txt").exists(), outcome
    finally:
        sandbox.destroy()


def start_platform(backend: str, logs: Path) -> tuple[servers.Process, servers.Process, str]:
    # Requests are counted (its cost is measured), never refused.
    env = {**os.environ, "JETTY_SANDBOX_BACKEND": backend, "JETTY_RATE_LIMIT_REQUESTS": str(10**9)}
    subprocess.run([sys.executable, "manage.py", "migrate", "-v0"], cwd=ROOT, env=env, check=True)
    token = subprocess.run(
        [
            sys.executable,
            "-c",
            (
                "import django; django.setup()\n"
                "from orgs.models import Org, ApiToken\n"
                "org, _ = Org.objects.get_or_create(name='bench')\n"
                "print(ApiToken.generate(org)[1])\n"
            ),
        ],
        cwd=ROOT,
        env=env,
        check=True,
        capture_output=True,
        text=True,
    ).stdout.split()[-1]
    port = servers.free_port()
    env.update({"JETTY_PUBLIC_URL": f"http://127.0.0.1:{port}", "JETTY_GATEWAY_SOCKET": str(WORK / "gw.sock")})
    web = servers.start_daphne(env, logs / f"web-{backend}.log", port)
    worker = servers.spawn(
        [
            str(Path(sys.executable).parent / "celery"),
            "-A",
            "jetty_site",
            "worker",
            "--concurrency=2",
            "--loglevel=WARNING",
        ],
        env,
        logs / f"worker-{backend}.log",
    )
    time.sleep(6)
    return web, servers.Process(worker, logs / f"worker-{backend}.log"), token


def measure_platform(backend: str, repeat: int, concurrent: int) -> list[tuple[str, float, float | None]]:
    web, worker, token = start_platform(backend, WORK)
    try:

        def run() -> dict:
            return platform_run(web.url, token)

        assert run()["jetty"]["status"] == "succeeded"
        ours = timed(run, max(5, repeat // 2))
        bare = timed(lambda: bare_agent(backend, web.url, token), max(5, repeat // 2))
        started = time.perf_counter()
        with ThreadPoolExecutor(concurrent) as pool:
            results = list(pool.map(lambda _: platform_run(web.url, token, timeout_s=600), range(concurrent)))
        elapsed = time.perf_counter() - started
        ok = sum(r["jetty"]["status"] == "succeeded" for r in results)
        label = (
            f"{concurrent} concurrent runs ({backend}): {ok}/{concurrent} succeeded, {concurrent - ok} lost, "
            f"{concurrent / elapsed * 60:.0f} runs/min (total ms)"
        )
        return [
            (f"one-turn run end to end ({backend})", statistics.median(ours), statistics.median(bare)),
            (label, elapsed * 1000, None),
        ]
    finally:
        worker.stop()
        web.stop()


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--repeat", type=int, default=15)
    parser.add_argument("--concurrent", type=int, default=20)
    args = parser.parse_args()
    backends = ["bubblewrap"] + (["docker"] if engine_answers(settings.JETTY_DOCKER_HOST) else [])
    rows = []
    for backend in backends:
        ours = timed(lambda b=backend: sandbox_cycle(b), args.repeat)
        bare = timed(bare_bwrap if backend == "bubblewrap" else bare_docker, args.repeat)
        rows.append((f"sandbox create+run+destroy ({backend})", statistics.median(ours), statistics.median(bare)))
    for backend in backends:
        rows += measure_platform(backend, args.repeat, args.concurrent)
    lines = ["| measurement | Jetty ms (median) | bare ms (median) | overhead |", "|---|---:|---:|---:|"]
    for name, ours, bare in rows:
        overhead = f"{(ours / bare - 1) * 100:+.0f}%" if bare else "-"
        lines.append(f"| {name} | {ours:.0f} | {'-' if bare is None else f'{bare:.0f}'} | {overhead} |")
    report = "\n".join(lines) + "\n"
    out = ROOT / "bench/results/sandboxes.md"
    out.write_text(report)
    print(report)


if __name__ == "__main__":
    main()
