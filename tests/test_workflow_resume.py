"""A workflow survives its worker being SIGKILLed between steps and during one: another worker resumes it from
its checkpoint, finished steps are not run again, and a side effect recorded as done is never doubled."""

from __future__ import annotations

import http.server
import threading
import time
from collections import Counter

import pytest

from runs.models import StepRun
from runs.tasks import sweep_runs
from tests.support import servers
from trajectories.models import Run

from .test_workflows import finished, push, step, workflow

pytestmark = pytest.mark.slow  # three worker processes killed and restarted: about 100 s

STALLED_S = 6  # JETTY_RUN_STALLED_S of the worker processes (tests/conftest.py)


class Receiver(http.server.BaseHTTPRequestHandler):
    seen: list[tuple[str, str]] = []
    release = threading.Event()

    def do_POST(self):
        Receiver.seen.append((self.path, self.headers["Idempotency-Key"]))
        if self.path == "/slow":
            Receiver.release.wait(30)
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"{}")

    def log_message(self, *args):
        pass


@pytest.fixture
def receiver():
    Receiver.seen, Receiver.release = [], threading.Event()
    server = http.server.ThreadingHTTPServer((servers.RECEIVER_HOST, 0), Receiver)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{servers.RECEIVER_HOST}:{server.server_port}"
    Receiver.release.set()
    server.shutdown()


@pytest.fixture
def own_workers(worker_process, jetty, process_env, logs):
    """Workers this test starts and kills; the session's worker is stopped meanwhile (it would take the work)."""
    worker_process.stop()
    started: list[servers.Process] = []

    def start(**env: str) -> servers.Process:
        log = logs / f"celery-resume-{time.time():.3f}.log"
        process = servers.start_celery_worker({**process_env, "JETTY_SANDBOX_BACKEND": "bubblewrap", **env}, log)
        started.append(process)
        return process

    yield start
    for process in started:
        process.stop()


def resume(settings) -> None:
    """What beat's sweeper does once the dead worker's heartbeat is old enough."""
    settings.JETTY_RUN_STALLED_S = STALLED_S
    time.sleep(STALLED_S + 0.5)
    assert sweep_runs() >= 1


def check_trajectory(run: Run) -> None:
    events = list(run.events.order_by("seq"))
    assert [e.seq for e in events] == list(range(1, len(events) + 1))
    ends = Counter((e.payload["step"], e.payload["visit"]) for e in events if e.kind == "step.end")
    assert all(n == 1 for n in ends.values()), ends


def test_a_worker_killed_between_steps(alice_api, own_workers, receiver, settings):
    definition = workflow(
        step("one", "http_request", url=f"{receiver}/one", method="POST"),
        step("two", "http_request", url=f"{receiver}/two", method="POST"),
        step("done", "text_echo", text="{{ one.outputs.status }} {{ two.outputs.status }}"),
    )
    push(alice_api, "crash", "between", workflow=definition)
    doomed = own_workers(JETTY_FAULT_KILL_AFTER_STEP="one")
    run_id = alice_api.post("/api/v1/run/crash/between", {}, format="json").json()["run_id"]
    doomed.proc.wait(30)  # it SIGKILLed itself right after step one's checkpoint
    assert Receiver.seen and [p for p, _ in Receiver.seen] == ["/one"]
    assert Run.objects.get(public_id=run_id).status == "running"

    own_workers()
    resume(settings)
    run = finished(run_id)
    assert run.status == "succeeded", run.error
    assert run.metadata["outputs"] == {"text": "200 200"}
    assert [p for p, _ in Receiver.seen] == ["/one", "/two"]  # step one was not run again
    steps = {s.name: s for s in StepRun.objects.filter(workflow__run=run)}
    assert steps["one"].attempts == 1 and steps["two"].attempts == 1 and len(steps) == 3
    assert run.job.attempts == 2
    check_trajectory(run)


def test_a_worker_killed_during_a_step(alice_api, own_workers, receiver, settings):
    definition = workflow(
        step("one", "http_request", url=f"{receiver}/one", method="POST"),
        step("slow", "http_request", url=f"{receiver}/slow", method="POST"),
        step("done", "text_echo", text="ok"),
    )
    push(alice_api, "crash", "during", workflow=definition)
    first = own_workers()
    run_id = alice_api.post("/api/v1/run/crash/during", {}, format="json").json()["run_id"]
    servers.wait_until(lambda: any(p == "/slow" for p, _ in Receiver.seen), 30, "the slow request")
    first.stop(sig=9)
    Receiver.release.set()

    own_workers()
    resume(settings)
    run = finished(run_id)
    assert run.status == "succeeded", run.error
    paths = [p for p, _ in Receiver.seen]
    assert paths == ["/one", "/slow", "/slow"]  # the step in flight ran again; the finished one did not
    slow_keys = {k for p, k in Receiver.seen if p == "/slow"}
    assert slow_keys == {f"{run_id}:slow:1"}  # the same idempotency key: the server can tell it is a repeat
    steps = {s.name: s for s in StepRun.objects.filter(workflow__run=run)}
    assert steps["one"].attempts == 1 and steps["slow"].attempts == 2
    check_trajectory(run)


SLOW_RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
---
# Objective
Wait, then write a file.

## REQUIRED OUTPUT FILES
- `/app/results/done.txt`

## Step 1: wait and write
```bash
sleep 4 && mkdir -p /app/results && echo done > /app/results/done.txt
```
"""


def test_a_worker_killed_while_an_agent_step_runs_does_not_start_the_agent_twice(alice_api, own_workers, settings):
    definition = workflow(
        step("agent", "runbook", runbook=SLOW_RUNBOOK, agent="jetty-agent", model="scripted/default"),
        step("read", "read_text_file", run_id_path="agent.outputs.run_id", path="done.txt"),
    )
    push(alice_api, "crash", "agentic", workflow=definition)
    first = own_workers()
    run_id = alice_api.post("/api/v1/run/crash/agentic", {}, format="json").json()["run_id"]
    parent = Run.objects.get(public_id=run_id)
    servers.wait_until(lambda: parent.children.filter(status="running").exists(), 30, "the agent run to start")
    first.stop(sig=9)

    own_workers()
    resume(settings)
    run = finished(run_id, timeout=90)
    assert run.status == "succeeded", run.error
    (child,) = run.children.all()  # found again by its idempotency key, not started a second time
    assert child.status == "succeeded" and child.job.attempts == 2
    assert run.metadata["outputs"]["text"] == "done\n"
    check_trajectory(run)
