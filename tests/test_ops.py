"""Operations settings: HTTPS behind a proxy, strict cgroups, and periodic tasks on a queue of their own."""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from pathlib import Path

import pytest
from django.conf import settings

from runs.models import Job
from runs.sandboxes import SandboxSpec, SandboxUnavailable, cgroups, create_sandbox
from runs.schedule import CELERY_BEAT_SCHEDULE, Queue
from runs.tasks import execute_run
from tests.support import servers
from trajectories.models import Run

ROOT = Path(__file__).resolve().parents[1]
DEPLOY_WARNINGS = ("security.W004", "security.W008", "security.W012", "security.W016")


def manage(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    """``manage.py`` in a process of its own, with settings read from this environment."""
    # A database, broker and files of its own: nothing of the developer's configuration leaks in.
    environ = {
        k: v for k, v in os.environ.items() if not k.startswith(("JETTY_", "CSRF_", "S3_", "DATABASE_", "REDIS_"))
    }
    environ.update({"JETTY_VAR_DIR": str(tmp_path), "SECRET_KEY": "x" * 60, **env})
    return subprocess.run(
        [sys.executable, "manage.py", *args], cwd=ROOT, env=environ, capture_output=True, text=True, timeout=120
    )


HTTPS = {"JETTY_HTTPS": "true", "JETTY_SSL_REDIRECT": "true", "JETTY_PUBLIC_URL": "https://jetty.example.com/"}


def test_check_deploy_finds_no_https_warnings_with_jetty_https(tmp_path):
    plain = manage(tmp_path, "check", "--deploy")
    assert all(w in plain.stderr + plain.stdout for w in DEPLOY_WARNINGS)  # the check does see them without it
    secured = manage(tmp_path, "check", "--deploy", **HTTPS)
    assert secured.returncode == 0, secured.stderr
    assert not [w for w in DEPLOY_WARNINGS if w in secured.stderr + secured.stdout]


PROBE = """
import json
import os
from django.conf import settings
from django.test import Client, RequestFactory
client = Client()
print(json.dumps({
    "forwarded": RequestFactory().get("/", HTTP_X_FORWARDED_PROTO="https").is_secure(),
    "bare": RequestFactory().get("/").is_secure(),
    "login": client.get("/login/").status_code,
    "login_forwarded": client.get("/login/", HTTP_X_FORWARDED_PROTO="https").status_code,
    "healthz": client.get("/healthz").status_code,
    "hsts": client.get("/login/", HTTP_X_FORWARDED_PROTO="https").headers.get("Strict-Transport-Security"),
    "trusted": settings.CSRF_TRUSTED_ORIGINS,
    "cookies": [settings.SESSION_COOKIE_SECURE, settings.CSRF_COOKIE_SECURE],
}))
"""


def test_a_request_forwarded_as_https_is_secure_and_plain_ones_are_redirected(tmp_path):
    migrated = manage(tmp_path, "migrate", "--noinput", **HTTPS)  # /healthz asks the database
    assert migrated.returncode == 0, migrated.stderr
    done = manage(tmp_path, "shell", "-c", PROBE, **HTTPS, ALLOWED_HOSTS="testserver", JETTY_HSTS_SECONDS="600")
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert seen["forwarded"] is True and seen["bare"] is False
    assert (seen["login"], seen["login_forwarded"], seen["healthz"]) == (301, 200, 200)
    assert seen["hsts"] == "max-age=600"
    assert seen["trusted"] == ["https://jetty.example.com"]
    assert seen["cookies"] == [True, True]


def test_jetty_https_refuses_a_plain_http_public_url(tmp_path):
    done = manage(tmp_path, "check", JETTY_HTTPS="true", JETTY_PUBLIC_URL="http://jetty.example.com")
    assert done.returncode != 0 and "JETTY_HTTPS=true needs an https JETTY_PUBLIC_URL" in done.stderr


# Strict cgroups. The hierarchy is a folder that claims the memory and pids controllers but where the group cannot be
# made (`jetty` is a file): the writes fail as they do on a read-only /sys/fs/cgroup, even for root.


@pytest.fixture
def broken_cgroups(tmp_path, monkeypatch, settings):
    root = tmp_path / "cgroup"
    root.mkdir()
    (root / "cgroup.controllers").write_text("cpuset cpu io memory pids\n")
    (root / "jetty").write_text("not a directory")
    monkeypatch.setattr(cgroups, "ROOT", root)
    settings.JETTY_SANDBOX_ROOT = tmp_path / "sandboxes"
    settings.JETTY_SANDBOX_BACKEND = "bubblewrap"
    return root


def test_without_strict_cgroups_a_sandbox_starts_without_limits(broken_cgroups, settings, caplog):
    settings.JETTY_REQUIRE_CGROUPS = False
    sandbox = create_sandbox(SandboxSpec(name="loose-a1"))
    try:
        assert not sandbox.cgroup.enforced and sandbox.root.is_dir()
        assert "cgroup limits unavailable for loose-a1" in caplog.text
    finally:
        sandbox.destroy()


def test_strict_cgroups_refuse_a_sandbox_without_limits_and_leave_nothing(broken_cgroups, settings):
    settings.JETTY_REQUIRE_CGROUPS = True
    with pytest.raises(SandboxUnavailable, match="JETTY_REQUIRE_CGROUPS"):
        create_sandbox(SandboxSpec(name="strict-a1"))
    assert not (Path(settings.JETTY_SANDBOX_ROOT) / "strict-a1").exists()


def test_strict_cgroups_refuse_a_host_without_a_cgroup_hierarchy(tmp_path, monkeypatch, settings):
    monkeypatch.setattr(cgroups, "ROOT", tmp_path / "nothing-here")
    settings.JETTY_SANDBOX_ROOT, settings.JETTY_REQUIRE_CGROUPS = tmp_path / "sandboxes", True
    with pytest.raises(SandboxUnavailable, match="no cgroup v1 or v2 hierarchy"):
        create_sandbox(SandboxSpec(name="bare-a1"), backend="bubblewrap")


def test_a_run_whose_limits_cannot_be_applied_fails_as_a_platform_fault(broken_cgroups, settings, alice, tmp_path):
    settings.JETTY_REQUIRE_CGROUPS = True
    settings.JETTY_GATEWAY_SOCKET = str(tmp_path / "gw.sock")  # present: the sandbox is what fails
    (tmp_path / "gw.sock").touch()
    run = Run.objects.create(org=alice.org, task="strict", kind="agent", status="queued", model="scripted/default")
    Job.objects.create(run=run, org=alice.org, runbook="# Objective\nsay hi\n")
    execute_run.apply(args=(run.pk,))  # retried in place (eager), then given up on
    run.refresh_from_db()
    assert (run.status, run.error_kind) == ("failed", "platform")
    assert "JETTY_REQUIRE_CGROUPS" in run.error
    assert Job.objects.get(run=run).attempts == 4  # the first try and three retries


def test_a_run_whose_network_cannot_be_attached_is_retried_as_a_platform_fault(settings, alice, tmp_path, monkeypatch):
    from runs.sandboxes import network

    monkeypatch.setattr(network, "BLOCKED", (*network.BLOCKED, "not-a-network"))
    settings.JETTY_SANDBOX_ROOT = settings.VAR_DIR / "test-sandboxes" / tmp_path.name  # reachable by the sandbox user
    settings.JETTY_SANDBOX_BACKEND = "bubblewrap"
    settings.JETTY_GATEWAY_SOCKET = str(tmp_path / "gw.sock")
    (tmp_path / "gw.sock").touch()
    run = Run.objects.create(org=alice.org, task="net", kind="agent", status="queued", model="scripted/default")
    Job.objects.create(run=run, org=alice.org, runbook="# Objective\nsay hi\n", network=True)
    execute_run.apply(args=(run.pk,))  # retried in place (eager), then given up on
    run.refresh_from_db()
    assert (run.status, run.error_kind) == ("failed", "platform")
    assert "could not start the sandbox: could not set the sandbox's routes" in run.error
    assert Job.objects.get(run=run).attempts == 4
    assert not list(Path(settings.JETTY_SANDBOX_ROOT).glob(f"{run.public_id}-*"))  # each attempt cleaned up


# Periodic tasks on their own queue.


def test_every_periodic_task_goes_to_the_periodic_queue_that_workers_consume():
    declared = {q.name for q in settings.CELERY_TASK_QUEUES}
    assert declared == {Queue.DEFAULT, Queue.PERIODIC} and settings.CELERY_TASK_DEFAULT_QUEUE == Queue.DEFAULT
    for name, entry in CELERY_BEAT_SCHEDULE.items():
        assert entry["options"]["queue"] == Queue.PERIODIC, name
        assert settings.CELERY_TASK_ROUTES[entry["task"]] == {"queue": Queue.PERIODIC}, name
    assert "runs.tasks.execute_run" not in settings.CELERY_TASK_ROUTES


QUEUE_FLAG = re.compile(r"(?:\s-Q|--queues)[= \"',]+([\w,.-]+)")


def test_no_worker_command_leaves_out_the_periodic_queue():
    """Workers consume both queues unless told otherwise: one given -Q without jetty-periodic would silently stop the
    sweeps wherever it runs alone. Every place that starts workers (scripts, benchmarks, tests, docs) is read."""
    places = [p for p in (ROOT / "scripts").iterdir() if p.is_file()]
    places += [*ROOT.glob("bench/*.py"), *ROOT.glob("tests/**/*.py"), *ROOT.glob("docs/*.md"), ROOT / "README.md"]
    places += [ROOT / "Makefile"]
    flags = {}
    for place in places:
        text = place.read_text()
        if place != Path(__file__) and "worker" in text:
            flags[place.relative_to(ROOT)] = QUEUE_FLAG.findall(text)
    for place, queues in flags.items():
        assert all(Queue.PERIODIC in q.split(",") for q in queues), f"{place}: -Q {queues}"
    assert Queue.PERIODIC.value in flags[Path("scripts/up")]  # the dedicated worker, and proof the pattern reads it


def test_a_worker_started_as_the_tests_start_it_runs_beats_tasks_from_the_periodic_queue(
    transactional_db, process_env, logs
):
    """Beat's message, with beat's options, reaches a worker started without -Q (the default consumes both). The
    session's own worker, started the same way, may be the one that takes it: any worker's log will do."""
    from runs.tasks import sweep_webhooks

    entry = CELERY_BEAT_SCHEDULE["sweep-webhooks"]
    worker = servers.start_celery_worker(process_env, logs / "celery-worker-periodic.log")
    try:
        sent = sweep_webhooks.apply_async(**{k: v for k, v in entry["options"].items() if k != "expires"})
        done = re.compile(rf"sweep_webhooks\[{sent.id}\] succeeded")
        servers.wait_until(
            lambda: any(done.search(log.read_text()) for log in logs.glob("celery-worker*.log")),
            30,
            "the periodic task",
            worker.proc,
            worker.log,
        )
    finally:
        worker.stop()
    log = worker.log.read_text()
    assert re.search(r"jetty-periodic\s+exchange=celery\(direct\) key=jetty-periodic", log), log[-2000:]
