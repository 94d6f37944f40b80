"""Finding 2 (critical): SSRF with the answer read back. A tenant's `http_request` step fetched the platform's own
`/healthz` and `/api/v1/...` on 127.0.0.1 and got body and headers back in the step outputs; run webhooks and OTLP
export reached loopback blind. Driven over HTTP against the live server and a Celery worker."""

from __future__ import annotations

import httpx

from orgs.admin import ProviderKeyForm
from orgs.models import ProviderKey
from runs.models import StepRun
from tests.factories import make_run
from tests.test_agent_runs import RUNBOOK
from tests.test_workflows import finished
from trajectories.models import Run


def api(jetty, token: str) -> httpx.Client:
    return httpx.Client(base_url=f"{jetty.url}/api/v1", headers={"Authorization": f"Bearer {token}"}, timeout=30)


def push_fetch_task(client: httpx.Client, params: dict) -> httpx.Response:
    client.post("/collections", json={"name": "probe"})
    workflow = {"steps": ["fetch"], "step_configs": {"fetch": {"type": "http_request", "params": params}}}
    return client.post("/collections/probe/tasks", json={"name": "fetch", "workflow": workflow})


def test_an_http_request_step_cannot_read_the_platforms_own_api(jetty, worker, alice):
    own = jetty.url  # http://127.0.0.1:<port>
    with api(jetty, alice.token) as client:
        # Given literally, the URL is refused when the workflow is saved.
        refused = push_fetch_task(client, {"url": f"{own}/healthz"})
        assert refused.status_code == 400, refused.text
        error = refused.json()["error"]
        assert error["code"] == "outbound_forbidden" and error["param"] == "workflow.step_configs.fetch.params.url"
        # Given at run time (a path into the run's inputs), the step fails and returns nothing it read.
        # (No credential in the step: the connection is refused before any request is sent, and a token stored in
        # a task definition would be the tenant's own doing.)
        pushed = push_fetch_task(client, {"url_path": "init_params.target"})
        assert pushed.status_code == 201, pushed.text
        for target in (f"{own}/healthz", f"{own}/api/v1/runs", own.replace("127.0.0.1", "localhost") + "/healthz"):
            started = client.post("/run/probe/fetch", json={"init_params": {"target": target}})
            assert started.status_code in (200, 201, 202), started.text
            run = finished(started.json()["run_id"])
            fetch = StepRun.objects.get(workflow__run=run, name="fetch")
            assert fetch.status == "failed", (target, fetch.outputs)
            assert fetch.outputs in ({}, None) and "outbound_forbidden" in fetch.error, fetch.error
            assert run.status != "succeeded" and run.status != "error"


def test_a_run_webhook_to_loopback_is_refused(jetty, alice):
    own = jetty.url
    with httpx.Client(base_url=f"{own}/v1", headers={"Authorization": f"Bearer {alice.token}"}, timeout=30) as c:
        response = c.post(
            "/chat/completions",
            json={
                "model": "scripted/default",
                "messages": [{"role": "system", "content": RUNBOOK}, {"role": "user", "content": "go"}],
                "jetty": {
                    "runbook": True,
                    "template_variables": {"name": "wh"},
                    "webhook_url": f"{own}/api/v1/runs",
                    "webhook_secret": "s",
                },
            },
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "outbound_forbidden" and error["param"] == "jetty.webhook_url"
    assert not Run.objects.filter(org=alice.org).exists()


def test_a_stored_run_webhook_to_loopback_is_refused(jetty, alice):
    with api(jetty, alice.token) as client:
        workflow = {"steps": ["a"], "step_configs": {"a": {"type": "text_echo", "params": {"text": "x"}}}}
        client.post("/collections", json={"name": "probe"})
        assert client.post("/collections/probe/tasks", json={"name": "echo", "workflow": workflow}).status_code == 201
        response = client.post(
            "/run/probe/echo", json={"webhook_url": "http://[::ffff:127.0.0.1]:9/x", "webhook_secret": "s"}
        )
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "outbound_forbidden" and error["param"] == "webhook_url"
    assert not Run.objects.filter(org=alice.org).exists()


def test_an_otlp_export_to_loopback_is_refused(jetty, alice):
    run = make_run(alice.org)
    with api(jetty, alice.token) as client:
        response = client.post(f"/runs/{run.public_id}/export/otlp", json={"endpoint": f"{jetty.url}/v1/traces"})
    assert response.status_code == 400, response.text
    error = response.json()["error"]
    assert error["code"] == "outbound_forbidden" and error["param"] == "endpoint"


def test_a_provider_key_cannot_point_the_gateway_inward(jetty, alice):
    # The admin form refuses an internal api_base when the key is saved ...
    form = ProviderKeyForm(
        data={"org": alice.org.pk, "provider": "openai", "api_base": "http://169.254.169.254/v1", "key": "sk-x"}
    )
    assert not form.is_valid() and "outbound_forbidden" in str(form.errors["api_base"])
    # ... and a key stored before (or a name that now resolves inward) is refused at each call, on both paths: the
    # gateway's own client (openai) and litellm (hosted_vllm).
    for provider in ("openai", "hosted_vllm"):
        key = ProviderKey(org=alice.org, provider=provider, api_base=f"{jetty.url}/api/v1", model_names=["x"])
        key.set_key("sk-upstream-secret-0123456789")
        key.save()
    with httpx.Client(base_url=f"{jetty.url}/v1", headers={"Authorization": f"Bearer {alice.token}"}, timeout=30) as c:
        for model in ("openai/gpt-4o-mini", "hosted_vllm/x"):
            response = c.post(
                "/chat/completions", json={"model": model, "messages": [{"role": "user", "content": "hi"}]}
            )
            assert response.status_code == 400, response.text
            assert response.json()["error"]["code"] == "outbound_forbidden"
