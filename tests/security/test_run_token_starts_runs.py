"""Finding 4: a run's own token started more runs, and reached the whole web app, from inside its sandbox.

A hostile runbook's bash takes ``$JETTY_RUN_TOKEN`` (what every agent gets) and calls the gateway relay at
``http://127.0.0.1:8765``: agent mode, the API, the admin login and the UI are refused, a model call still works,
and past the run's model-call budget (``jetty.limits.model_calls``) calls are refused with 429 and the run ends as
a user error naming the limit. The same token from outside the sandbox (over TCP) is refused the same way.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request

from django.utils import timezone

from runs.models import Job, RunToken
from tests.factories import make_run
from tests.test_agent_runs import final_run, start_async
from tests.test_escape import artifact, runbook
from trajectories.models import Run

PROBE = """python3 - <<'EOF'
import json, os, urllib.error, urllib.request
token = os.environ["JETTY_RUN_TOKEN"]
def call(method, path, body=None):
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": "Bearer " + token, "Content-Type": "application/json"}
    request = urllib.request.Request("http://127.0.0.1:8765" + path, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return [response.status, response.read().decode(errors="replace")[:4000]]
    except urllib.error.HTTPError as exc:
        return [exc.code, exc.read().decode(errors="replace")[:4000]]
spawn = {"model": "scripted/default", "jetty": {"runbook": True, "async": True},
         "messages": [{"role": "system", "content": "# Spawn\\n"}, {"role": "user", "content": "go"}]}
found = {
    "agent_mode": call("POST", "/v1/chat/completions", spawn),
    "api_runs": call("GET", "/api/v1/runs"),
    "admin_login": call("GET", "/admin/login/"),
    "ui_runs": call("GET", "/runs/"),
    "model_call": call("POST", "/v1/chat/completions",
                       {"model": "scripted/default", "messages": [{"role": "user", "content": "still works"}]}),
}
json.dump(found, open("/app/results/probe.json", "w"))
EOF
echo probed"""

BUDGET = """python3 - <<'EOF'
import json, os, urllib.error, urllib.request
body = json.dumps({"model": "scripted/default", "messages": [{"role": "user", "content": "again"}]}).encode()
headers = {"Authorization": "Bearer " + os.environ["JETTY_RUN_TOKEN"], "Content-Type": "application/json"}
codes = []
for _ in range(3):
    request = urllib.request.Request("http://127.0.0.1:8765/v1/chat/completions", data=body, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            codes.append([response.status, ""])
    except urllib.error.HTTPError as exc:
        codes.append([exc.code, json.loads(exc.read())["error"]["code"]])
json.dump(codes, open("/app/results/codes.json", "w"))
EOF
sleep 20"""


def test_a_sandbox_cannot_start_runs_or_reach_the_web_app_with_its_run_token(alice, alice_client, each_backend_worker):
    run_id = start_async(alice_client, runbook=runbook(PROBE), template_variables={}, task="spawn")
    run = final_run(run_id, 120)
    assert run.status == "succeeded", (each_backend_worker.backend, run.status, run.error)
    found = json.loads(artifact(run, "probe.json"))
    for name in ("agent_mode", "api_runs", "admin_login", "ui_runs"):
        assert found[name][0] in (403, 404), (each_backend_worker.backend, name, found[name])
    assert json.loads(found["agent_mode"][1])["error"]["code"] == "run_token_forbidden"
    assert found["model_call"][0] == 200, found["model_call"]
    assert json.loads(found["model_call"][1])["choices"][0]["message"]["content"] == "echo: still works"
    # No agent run was started from inside: only this one and none of task "_agent".
    assert list(Run.objects.filter(org=alice.org, kind="agent").values_list("public_id", flat=True)) == [run_id]


def test_a_run_past_its_model_call_budget_is_refused_and_ends_as_a_user_error(alice_client, each_backend_worker):
    # Call 1 is the agent's own (it runs the block); the block makes calls 2 and 3, and the 4th is past the budget.
    run_id = start_async(
        alice_client, runbook=runbook(BUDGET), template_variables={}, task="budget", limits={"model_calls": 3}
    )
    run = final_run(run_id, 120)
    codes = json.loads(artifact(run, "codes.json"))
    assert codes == [[200, ""], [200, ""], [429, "model_call_budget_exhausted"]], (each_backend_worker.backend, codes)
    assert run.status == "failed" and run.error_kind == "user", (run.status, run.error)
    assert run.error.startswith("model-call budget exhausted: the run made its 3 model calls"), run.error


def call(url: str, token: str, method: str = "GET", body: dict | None = None) -> tuple[int, dict | str]:
    data = None if body is None else json.dumps(body).encode()
    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            status, text = response.status, response.read().decode(errors="replace")
    except urllib.error.HTTPError as exc:
        status, text = exc.code, exc.read().decode(errors="replace")
    try:
        return status, json.loads(text)
    except ValueError:
        return status, text[:200]


def test_a_run_token_works_only_on_model_routes_over_tcp_too(alice, jetty):
    run = make_run(alice.org, task="held", status="running", events=0)
    Job.objects.create(run=run, org=alice.org, runbook="# held")
    token = RunToken.mint(run, ttl_s=600)
    assert RunToken.objects.filter(run=run, expires_at__gt=timezone.now()).exists()
    spawn = {
        "model": "scripted/default",
        "messages": [{"role": "system", "content": "# Spawn\n"}, {"role": "user", "content": "go"}],
        "jetty": {"runbook": True, "async": True},
    }
    refused = {
        "agent_mode": call(f"{jetty.url}/v1/chat/completions", token, "POST", spawn),
        "api_runs": call(f"{jetty.url}/api/v1/runs", token),
        "api_export": call(f"{jetty.url}/api/v1/runs/{run.public_id}/export", token),
        "admin_login": call(f"{jetty.url}/admin/login/", token),
        "ui_runs": call(f"{jetty.url}/runs/", token),
    }
    for name, (status, body) in refused.items():
        assert status == 403, (name, status, body)
        assert isinstance(body, dict) and body["error"]["code"] == "run_token_forbidden", (name, body)
    status, listing = call(f"{jetty.url}/v1/models", token)
    assert status == 200 and [m["id"] for m in listing["data"]] == ["scripted/default"]
    assert Run.objects.filter(org=alice.org, kind="agent").count() == 0
