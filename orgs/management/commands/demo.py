"""Bootstrap a demo org (``--setup``) and finish a demo run through the live gateway (``--run``)."""

from __future__ import annotations

import json
import os
import shlex
import time
import urllib.error
import urllib.request
from pathlib import Path

from django.conf import settings
from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from orgs.actions import create_org, create_token
from orgs.audit import Actor
from orgs.auth import principal_for
from orgs.models import Membership, Org, Role

ORG = "demo"
DEMO_RUNBOOK = """---
version: 1.0.0
evaluation: programmatic
---
# Objective
Show that Jetty runs a runbook end to end: list the Python files of the standard library's json package,
count them, and write a validation report.

## Step 1: survey
```bash
ls /usr/lib/python3*/json/*.py | xargs -n1 basename > /app/results/files.txt && wc -l < /app/results/files.txt
```

## Step 2: validation report
```bash
python3 - <<'PY'
import json
files = open("/app/results/files.txt").read().split()
stage = {"name": "survey", "passed": bool(files), "message": f"{len(files)} files"}
results = {"pass": int(bool(files)), "partial": 0, "fail": int(not files)}
report = {"version": "1.0.0", "overall_passed": bool(files), "stages": [stage], "results": results}
json.dump(report, open("/app/results/validation_report.json", "w"))
PY
```
"""


class Command(BaseCommand):
    help = "Set up the demo org, admin user and token, or finish a demo run against a running server."

    def add_arguments(self, parser):
        parser.add_argument("--setup", action="store_true")
        parser.add_argument("--run", action="store_true")
        parser.add_argument("--url", default=settings.PUBLIC_URL)
        parser.add_argument("--token")

    def handle(self, setup: bool, run: bool, url: str, token: str | None, **options):
        if setup:
            self.setup()
        if run:
            if not token:
                raise CommandError("--run needs --token")
            self.run(url.rstrip("/"), token)

    @transaction.atomic
    def setup(self) -> None:
        username = os.environ.get("JETTY_DEMO_USER", "admin")
        password = os.environ.get("JETTY_DEMO_PASSWORD", "jetty-demo")
        User = get_user_model()
        user, _ = User.objects.get_or_create(username=username, defaults={"is_staff": True, "is_superuser": True})
        user.is_staff = user.is_superuser = True
        user.set_password(password)
        user.save()
        org = Org.objects.filter(name=ORG).first() or create_org(ORG, actor=Actor.command("demo"))
        Membership.objects.get_or_create(org=org, user=user, defaults={"role": Role.OWNER})
        token_file = Path(settings.VAR_DIR) / "demo-token"
        plain = token_file.read_text().strip() if token_file.exists() else ""
        if principal_for(plain) is None:
            _, plain = create_token(org, name="demo", created_by=user, actor=Actor.command("demo"))
            token_file.write_text(plain)
            token_file.chmod(0o600)
        values = {
            "JETTY_DEMO_ORG": org.name,
            "JETTY_DEMO_USER": username,
            "JETTY_DEMO_PASSWORD": password,
            "JETTY_DEMO_TOKEN": plain,
        }
        for key, value in values.items():
            self.stdout.write(f"{key}={shlex.quote(value)}")

    def run(self, url: str, token: str) -> None:
        body = {
            "model": "scripted/default",
            "messages": [
                {"role": "system", "content": "You are Jetty's demo."},
                {"role": "user", "content": "Say hello to the new Jetty install"},
            ],
            "jetty": {"task": "demo-hello"},
        }
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        request = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=60) as response:
            run_id = response.headers["x-jetty-run-id"]
            answer = json.loads(response.read())["choices"][0]["message"]["content"]
        run_url = f"{url}/api/v1/runs/{run_id}"
        deadline = time.monotonic() + 30
        while True:
            try:
                with urllib.request.urlopen(urllib.request.Request(run_url, headers=headers), timeout=10) as found:
                    record = json.loads(found.read())
                break
            except urllib.error.HTTPError as exc:
                if exc.code != 404 or time.monotonic() > deadline:
                    raise CommandError(f"demo run {run_id} was not recorded: {exc}") from exc
                time.sleep(0.2)
        self.stdout.write(f"Demo chat run {run_id} finished: {record['status']}, model said {answer!r}")
        self.stdout.write(f"  see it: {run_url}  (events: {run_url}/events)")
        self.agent_run(url, headers)

    def agent_run(self, url: str, headers: dict[str, str]) -> None:
        """A runbook worked by jetty-agent in a sandbox, offline, against the scripted model."""
        body = {
            "model": "scripted/default",
            "messages": [{"role": "system", "content": DEMO_RUNBOOK}, {"role": "user", "content": "Run it."}],
            "jetty": {"runbook": True, "task": "demo-runbook", "agent": "jetty-agent", "timeout_s": 120},
        }
        request = urllib.request.Request(f"{url}/v1/chat/completions", json.dumps(body).encode(), headers)
        with urllib.request.urlopen(request, timeout=180) as response:
            summary = json.loads(response.read())["jetty"]
        files = ", ".join(f["path"] for f in summary["results_files"])
        self.stdout.write(f"Demo agent run {summary['run_id']} finished: {summary['status']} ({files})")
        self.stdout.write(f"  see it: {url}/api/v1/runs/{summary['run_id']}  (events: {summary['trajectory_url']})")
