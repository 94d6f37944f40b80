"""Agent mode end to end: the openai client, a live server, a Celery worker process and a real sandbox."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from trajectories.models import FINAL_STATUSES, Run

RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
---
# Objective
Count the words of a greeting for {{name}} and report.

## REQUIRED OUTPUT FILES
- `/app/results/count.txt`
- `/app/results/summary.md`
- `/app/results/validation_report.json`

## Step 1: write the greeting
```bash
mkdir -p {{results_dir}} && echo "hello {{name}} from jetty" > {{results_dir}}/greeting.txt
```

## Step 2: count
```bash
wc -w < /app/results/greeting.txt > /app/results/count.txt && cat /app/results/count.txt
```

## Step 3: validation report
```bash
echo '{"version": "1.0.0", "overall_passed": true, "results": {"pass": 1, "partial": 0, "fail": 0},' \
  '"stages": [{"name": "count", "passed": true, "message": "ok"}]}' \
  > /app/results/validation_report.json
```
"""


def agent_call(client, **jetty):
    return client.chat.completions.with_raw_response.create(
        model="scripted/default",
        messages=[{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "Do the runbook."}],
        extra_body={"jetty": {"runbook": True, "task": "greet", "template_variables": {"name": "ada"}, **jetty}},
        timeout=120,
    )


def test_a_runbook_runs_end_to_end_in_a_sandbox(alice_client, each_backend_worker):
    raw = agent_call(alice_client, agent="jetty-agent")
    completion = raw.parse()
    body = json.loads(raw.http_response.text)
    summary = body["jetty"]
    assert summary["status"] == "succeeded", summary
    assert summary["agent"] == "jetty-agent" and summary["task"] == "greet"
    files = {f["path"]: f for f in summary["results_files"]}
    assert set(files) == {"greeting.txt", "count.txt", "summary.md", "validation_report.json"}
    assert summary["validation"]["overall_passed"] is True
    assert "count.txt" in summary["primary_files"] and "summary.md" not in summary["primary_files"]
    assert completion.choices[0].message.content.startswith("Runbook complete")

    run = Run.objects.get(public_id=summary["run_id"])
    assert run.artifacts.get(path="count.txt").file.read() == b"4\n"
    assert run.artifacts.get(path="greeting.txt").file.read() == b"hello ada from jetty\n"
    labels = {label.key: (label.value, label.source) for label in run.labels.all()}
    assert labels == {
        "validation.overall_passed": (True, "system"),
        "validation.stage.count": (True, "system"),
        "contract.passed": (True, "system"),
        "contract.required_files": (True, "system"),
        "contract.validation_report": (True, "system"),
    }
    assert summary["contract"]["passed"] is True and run.contract == summary["contract"]
    events = list(run.events.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    kinds = [e.kind for e in events]
    assert kinds[0] == "run.state" and events[0].payload["status"] == "queued"
    assert events[-1].payload == {"status": "succeeded"}
    assert kinds.count("model.call") == 5  # three blocks, the summary, the final answer
    assert kinds.count("command") == 4 and kinds.count("tool.call") == 4 and kinds.count("tool.result") == 4
    commands = [e.payload["command"] for e in events if e.kind == "command"]
    assert commands[0].startswith('mkdir -p /app/results && echo "hello ada from jetty"')
    # each model call comes before the tool call it asked for
    for i, event in enumerate(events):
        if event.kind == "tool.call":
            assert events[i - 1].kind in ("model.call", "agent.message")
    assert run.prompt_tokens > 0 and run.events.filter(kind="model.call").first().payload["request"]["tools"]
    changed = [(e.payload["path"], e.payload["action"]) for e in events if e.kind == "file.change"]
    assert changed[:2] == [("/app/results/greeting.txt", "created"), ("/app/results/count.txt", "created")]
    assert ("/app/results/summary.md", "created") in changed


def test_streaming_sends_events_as_they_happen_then_the_summary(alice_client, worker):
    stream = alice_client.chat.completions.create(
        model="scripted/default",
        messages=[{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "go"}],
        extra_body={"jetty": {"runbook": True, "template_variables": {"name": "bo"}}},
        stream=True,
        timeout=120,
    )
    chunks = list(stream)
    kinds = [c.model_extra["jetty"]["event"] for c in chunks]
    assert "command" in kinds and "model.call" in kinds and kinds[-1] == "summary"
    assert chunks[-1].choices[0].finish_reason == "stop"
    assert chunks[-1].model_extra["jetty"]["status"] == "succeeded"
    seqs = [c.model_extra["jetty"]["seq"] for c in chunks[:-1]]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)


def test_async_returns_202_and_the_run_finishes(alice, alice_client, jetty, worker):
    raw = agent_call(alice_client, **{"async": True})
    assert raw.http_response.status_code == 202
    run_id = json.loads(raw.http_response.text)["id"]
    deadline = time.monotonic() + 60
    while Run.objects.get(public_id=run_id).status not in FINAL_STATUSES:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    request = urllib.request.Request(
        f"{jetty.url}/api/v1/runs/{run_id}/artifacts/count.txt", headers={"Authorization": f"Bearer {alice.token}"}
    )
    with urllib.request.urlopen(request) as response:
        assert response.read() == b"4\n"


def test_an_idempotency_key_returns_the_same_run(alice_client, worker):
    first = json.loads(agent_call(alice_client, idempotency_key="k-1", **{"async": True}).http_response.text)
    second = json.loads(agent_call(alice_client, idempotency_key="k-1", **{"async": True}).http_response.text)
    assert first["id"] == second["id"]
    assert Run.objects.filter(kind="agent").count() == 1


@pytest.mark.parametrize(
    "block, param",
    [
        ({"agent": "nope"}, "jetty.agent"),
        ({"snapshot": "windows"}, "jetty.snapshot"),
        ({"template_variables": {}}, "jetty.template_variables"),
        ({"template_variables": {"name": "x", "extra": 1}}, "jetty.template_variables"),
        ({"timeout_s": 0}, "jetty.timeout_s"),
        ({"network": "maybe"}, "jetty.network"),
        ({"limits": {"memory_mb": 10**9}}, "jetty.limits"),
        ({"limits": {"pids": 1}}, "jetty.limits"),
        ({"limits": {"cpus": "two"}}, "jetty.limits"),
        ({"limits": {"gpus": 1}}, "jetty.limits"),
        ({"limits": [512]}, "jetty.limits"),
    ],
)
def test_bad_agent_requests_are_400_and_start_nothing(alice_client, worker, block, param):
    import openai

    base = {"runbook": True, "template_variables": {"name": "x"}}
    with pytest.raises(openai.BadRequestError) as caught:
        alice_client.chat.completions.create(
            model="scripted/default",
            messages=[{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "go"}],
            extra_body={"jetty": {**base, **block}},
        )
    assert caught.value.body["param"] == param
    assert not Run.objects.exists()


def test_an_agent_run_on_a_provider_without_a_key_is_400_and_starts_nothing(alice_client, worker):
    import openai

    with pytest.raises(openai.BadRequestError) as caught:
        alice_client.chat.completions.create(
            model="anthropic/claude-sonnet-4-5",
            messages=[{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "go"}],
            extra_body={"jetty": {"runbook": True, "template_variables": {"name": "x"}}},
        )
    assert caught.value.body["code"] == "provider_not_configured" and caught.value.body["param"] == "model"
    assert not Run.objects.exists()


def test_a_missing_runbook_is_400(alice_client, worker):
    import openai

    with pytest.raises(openai.BadRequestError):
        alice_client.chat.completions.create(
            model="scripted/default",
            messages=[{"role": "user", "content": "go"}],
            extra_body={"jetty": {"runbook": True}},
        )


SLOW_RUNBOOK = """# Objective
Take a while.

```bash
echo started > /app/results/started.txt
```

```bash
sleep {{seconds}}
```

```bash
echo finished > /app/results/finished.txt
```
"""


def start_async(client, runbook: str = SLOW_RUNBOOK, seconds: int = 30, **jetty) -> str:
    jetty.setdefault("template_variables", {"seconds": seconds})
    raw = client.chat.completions.with_raw_response.create(
        model="scripted/default",
        messages=[{"role": "system", "content": runbook}, {"role": "user", "content": "go"}],
        extra_body={"jetty": {"runbook": True, "async": True, **jetty}},
    )
    return json.loads(raw.http_response.text)["id"]


def wait_for(predicate, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.2)
    raise AssertionError(f"timed out waiting for {what}")


def final_run(run_id: str, timeout: float = 60) -> Run:
    return wait_for(
        lambda: (r := Run.objects.get(public_id=run_id)).status in FINAL_STATUSES and r,
        timeout,
        f"run {run_id} to finish",
    )


def assert_clean_trajectory(run: Run) -> None:
    seqs = list(run.events.order_by("seq").values_list("seq", flat=True))
    assert seqs == list(range(1, len(seqs) + 1)) and run.last_seq == len(seqs)
    finals = run.events.filter(kind="run.state", payload__status__in=sorted(FINAL_STATUSES))
    assert finals.count() == 1


def test_cancel_kills_the_sandbox_and_ends_the_run_cancelled(alice, alice_client, jetty, worker, settings):
    run_id = start_async(alice_client)
    wait_for(lambda: Run.objects.get(public_id=run_id).events.filter(kind="command").exists(), 30, "first command")
    request = urllib.request.Request(
        f"{jetty.url}/api/v1/runs/{run_id}/cancel", method="POST", headers={"Authorization": f"Bearer {alice.token}"}
    )
    with urllib.request.urlopen(request) as response:
        assert response.status == 200
    run = final_run(run_id, 20)
    assert run.status == "cancelled"
    assert not run.artifacts.filter(path="finished.txt").exists()
    assert_clean_trajectory(run)
    root = settings.BASE_DIR / "var" / f"test-sandboxes-{jetty.url.rsplit(':', 1)[1]}"
    assert not list(root.glob(f"{run_id}-*"))


def test_cancelling_another_orgs_run_is_404(alice_client, bob, jetty, worker):
    run_id = start_async(alice_client, seconds=1)
    request = urllib.request.Request(
        f"{jetty.url}/api/v1/runs/{run_id}/cancel", method="POST", headers={"Authorization": f"Bearer {bob.token}"}
    )
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 404
    assert final_run(run_id).status == "succeeded"


def test_wall_time_over_the_limit_ends_the_run_timed_out(alice_client, worker):
    run = final_run(start_async(alice_client, seconds=60, timeout_s=3), 30)
    assert run.status == "timed_out" and run.error_kind == "user"
    assert "wall time" in run.error
    assert_clean_trajectory(run)


def test_the_run_token_dies_with_the_run(alice_client, jetty, worker):
    leak = "```bash\necho -n $JETTY_RUN_TOKEN > /app/results/token.txt\n```\n"
    run = final_run(start_async(alice_client, runbook=leak, template_variables={}))
    token = run.artifacts.get(path="token.txt").file.read().decode()
    assert token.startswith("jrt_")
    import openai

    from tests.conftest import client

    with pytest.raises(openai.AuthenticationError):
        client(jetty, token).chat.completions.create(
            model="scripted/default", messages=[{"role": "user", "content": "still alive?"}]
        )


def test_a_worker_killed_mid_run_loses_nothing(alice_client, worker_process, jetty, process_env, logs):
    """SIGKILL the only worker while the agent sleeps; a new worker takes the stalled run over and finishes it."""
    import signal

    from runs.tasks import sweep_runs
    from tests.support import servers

    worker_process.stop(signal.SIGKILL)
    worker_process.backend = ""
    env = {**process_env, "JETTY_SANDBOX_BACKEND": "bubblewrap"}
    doomed = servers.start_celery_worker(env, logs / "celery-worker-doomed.log")
    run_id = start_async(alice_client, seconds=6)
    run = Run.objects.get(public_id=run_id)
    wait_for(lambda: run.events.filter(kind="command").exists(), 30, "the first command")
    doomed.stop(signal.SIGKILL)
    before = list(run.events.order_by("seq").values_list("seq", "kind"))

    replacement = servers.start_celery_worker(env, logs / "celery-worker-replacement.log")
    worker_process.proc, worker_process.log = replacement.proc, replacement.log  # later tests use it
    worker_process.backend = "bubblewrap"
    time.sleep(7)  # the dead worker's heartbeat goes stale (JETTY_RUN_STALLED_S=6 here)
    sweep_runs.delay()
    run = final_run(run_id, 60)

    assert run.status == "succeeded", run.error
    assert run.job.attempts == 2
    after = list(run.events.order_by("seq").values_list("seq", "kind"))
    assert after[: len(before)] == before  # nothing of the first attempt lost or rewritten
    assert_clean_trajectory(run)
    states = [e.payload for e in run.events.filter(kind="run.state").order_by("seq")]
    assert [s["status"] for s in states] == ["queued", "running", "queued", "running", "succeeded"]
    assert {a.path for a in run.artifacts.all()} >= {"started.txt", "finished.txt", "summary.md"}
    root = Path(process_env["JETTY_SANDBOX_ROOT"])
    assert not list(root.glob(f"{run_id}-*"))


OFFLINE = """# Objective
Work with the network off.

```bash
python3 -c "import socket; socket.create_connection(('1.1.1.1', 80), 2)" 2>/dev/null && echo egress || echo no-egress
```

```bash
(exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null && echo db-reachable || echo no-db > /app/results/net.txt
```
"""


def test_with_network_off_the_agent_reaches_only_the_gateway(alice_client, each_backend_worker):
    raw = alice_client.chat.completions.with_raw_response.create(
        model="scripted/default",
        messages=[{"role": "system", "content": OFFLINE}, {"role": "user", "content": "go"}],
        extra_body={"jetty": {"runbook": True, "network": "off"}},
        timeout=120,
    )
    summary = json.loads(raw.http_response.text)["jetty"]
    assert summary["status"] == "succeeded", summary
    run = Run.objects.get(public_id=summary["run_id"])
    outputs = [e.payload["output"].strip() for e in run.events.filter(kind="command").order_by("seq")]
    assert outputs[0] == "no-egress"
    assert run.artifacts.get(path="net.txt").file.read() == b"no-db\n"
    assert run.events.filter(kind="model.call").count() == 4  # every model call went through the relay


def test_the_sweeper_destroys_sandboxes_left_by_dead_workers(alice, settings, process_env):
    from runs.sandboxes import SandboxSpec, create_sandbox
    from runs.tasks import remove_orphaned_sandboxes
    from trajectories.models import Run as RunModel

    settings.JETTY_SANDBOX_ROOT = Path(process_env["JETTY_SANDBOX_ROOT"])
    done = RunModel.objects.create(org=alice.org, task="t", kind="agent", status="failed")
    running = RunModel.objects.create(org=alice.org, task="t", kind="agent", status="running")
    left = create_sandbox(SandboxSpec(name=f"{done.public_id}-a1"), backend="bubblewrap")
    live = create_sandbox(SandboxSpec(name=f"{running.public_id}-a1"), backend="bubblewrap")
    try:
        assert remove_orphaned_sandboxes() == 1
        assert not left.root.exists() and all(not d.exists() for d in left.cgroup.dirs)
        assert live.root.exists()
    finally:
        live.destroy()


def test_no_provider_key_or_database_credential_enters_the_sandbox(alice, alice_client, upstream, worker):
    from orgs.models import ProviderKey

    dump = "```bash\nenv > /app/results/env.txt; ls -a /home/agent /home/agent/.jetty > /app/results/home.txt\n```\n"
    run = final_run(start_async(alice_client, runbook=dump, template_variables={}))
    assert run.status == "succeeded", run.error
    env = run.artifacts.get(path="env.txt").file.read().decode()
    names = {line.split("=", 1)[0] for line in env.splitlines() if "=" in line}
    assert names <= {
        "PATH",
        "HOME",
        "USER",
        "LANG",
        "TERM",
        "PWD",
        "SHLVL",
        "_",
        "OLDPWD",
        "JETTY_GATEWAY_URL",
        "JETTY_RUN_TOKEN",
        "JETTY_MODEL",
        "JETTY_MISSION",
        "JETTY_MAX_TURNS",
    }, names
    for secret in [k.get_key() for k in ProviderKey.objects.filter(org=alice.org)] + [alice.token]:
        assert secret not in env
    assert "DATABASE_URL" not in env and "postgres" not in env and "SECRET_KEY" not in env
