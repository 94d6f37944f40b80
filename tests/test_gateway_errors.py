"""Every error comes back in OpenAI's shape with the right status, and bad input records nothing."""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.request
from datetime import timedelta

import openai
import pytest
from django.utils import timezone

from orgs.models import ProviderKey
from tests.conftest import client, wait_for_run
from tests.support.servers import RECEIVER_HOST, free_port
from trajectories.models import Run


def post(server, token: str | None, body: bytes | dict, path: str = "/v1/chat/completions") -> tuple[int, dict, dict]:
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"Content-Type": "application/json"}
    if token is not None:
        headers["Authorization"] = f"Bearer {token}"
    request = urllib.request.Request(f"{server.url}{path}", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read()), {k.lower(): v for k, v in response.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read()), {k.lower(): v for k, v in exc.headers.items()}


def assert_openai_error(body: dict, code: str | None = None) -> None:
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"}
    assert body["error"]["message"]
    if code is not None:
        assert body["error"]["code"] == code


HELLO = {"model": "scripted/default", "messages": [{"role": "user", "content": "hi"}]}


def test_it_rejects_a_missing_key(jetty, alice):
    status, body, _ = post(jetty, None, HELLO)
    assert status == 401
    assert_openai_error(body, "invalid_api_key")


def test_it_rejects_a_wrong_key(jetty, alice):
    with pytest.raises(openai.AuthenticationError) as caught:
        client(jetty, "jty_not-a-real-token").chat.completions.create(**HELLO)
    assert caught.value.status_code == 401
    assert caught.value.body["code"] == "invalid_api_key"


def test_it_rejects_an_expired_key(jetty, alice):
    alice.api_token.expires_at = timezone.now() - timedelta(seconds=1)
    alice.api_token.save()
    status, body, _ = post(jetty, alice.token, HELLO)
    assert status == 401
    assert_openai_error(body, "invalid_api_key")


def test_it_rejects_a_revoked_key_within_the_cache_window(jetty, alice):
    assert post(jetty, alice.token, HELLO)[0] == 200
    alice.api_token.revoked_at = timezone.now()
    alice.api_token.save()
    deadline = time.monotonic() + 5  # the live server caches resolutions for 1 s
    while post(jetty, alice.token, HELLO)[0] != 401:
        assert time.monotonic() < deadline, "revoked token still accepted"
        time.sleep(0.2)


@pytest.mark.parametrize(
    "body, param",
    [
        (b"{not json", None),
        (b"[1, 2]", None),
        ({"messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": 5, "messages": [{"role": "user", "content": "x"}]}, "model"),
        ({"model": "scripted/default"}, "messages"),
        ({"model": "scripted/default", "messages": []}, "messages"),
        ({"model": "scripted/default", "messages": ["hi"]}, "messages[0].role"),
        ({"model": "scripted/default", "messages": [{"role": "wizard", "content": "x"}]}, "messages[0].role"),
        ({**HELLO, "stream": "yes"}, "stream"),
        ({**HELLO, "n": 0}, "n"),
        ({**HELLO, "tools": {"a": 1}}, "tools"),
        ({**HELLO, "jetty": "task"}, "jetty"),
        ({**HELLO, "jetty": {"tsak": "typo"}}, "jetty"),
    ],
)
def test_it_rejects_malformed_requests_and_records_nothing(jetty, alice, body, param):
    status, error, _ = post(jetty, alice.token, body)
    assert status == 400
    assert_openai_error(error)
    assert error["error"]["param"] == param
    time.sleep(0.2)
    assert not Run.objects.exists()


def test_it_rejects_an_unknown_model_with_404(jetty, alice):
    with pytest.raises(openai.NotFoundError) as caught:
        client(jetty, alice.token).chat.completions.create(model="no-such-model-anywhere", messages=HELLO["messages"])
    assert caught.value.body["code"] == "model_not_found"


def test_it_rejects_models_the_org_has_not_enabled(jetty, alice):
    alice.org.allowed_models = ["openai/*"]
    alice.org.save()
    status, body, _ = post(jetty, alice.token, HELLO)
    assert status == 404
    assert_openai_error(body, "model_not_found")


def test_it_rejects_a_body_over_the_limit_with_413(jetty, alice):
    huge = {**HELLO, "messages": [{"role": "user", "content": "x" * (2 * 1024 * 1024)}]}
    status, body, _ = post(jetty, alice.token, huge)
    assert status == 413
    assert_openai_error(body, "request_too_large")


def test_it_rejects_an_unknown_collection(jetty, alice):
    status, body, _ = post(jetty, alice.token, {**HELLO, "jetty": {"collection": "nope"}})
    assert status == 404
    assert_openai_error(body)


def test_wrong_method_is_405(jetty, alice):
    request = urllib.request.Request(f"{jetty.url}/v1/chat/completions", headers={"Authorization": "Bearer x"})
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)
    assert caught.value.code == 405
    assert_openai_error(json.loads(caught.value.read()))


UPSTREAM_FAULTS = [
    ("fake-429", 429, "rate_limit_exceeded"),
    ("fake-500", 502, "upstream_error"),
    ("fake-400", 400, "context_length_exceeded"),
    ("fake-401", 502, "provider_auth_failed"),
    ("fake-slow", 504, "upstream_timeout"),
]


@pytest.mark.parametrize("provider", ["openai", "hosted_vllm"])
@pytest.mark.parametrize("model, status, code", UPSTREAM_FAULTS)
def test_upstream_faults_map_to_openai_errors(jetty, alice, upstream, provider, model, status, code):
    if provider == "hosted_vllm" and code == "context_length_exceeded":
        code = None  # litellm rewords upstream 400s; the status is what it keeps
    status_seen, body, headers = post(jetty, alice.token, {**HELLO, "model": f"{provider}/{model}"})
    assert status_seen == status, body
    assert_openai_error(body, code)
    if status == 429 and provider == "openai":
        assert headers.get("retry-after") == "7"
    run = wait_for_run(headers["x-jetty-run-id"])
    assert run.status == "failed" and run.error_kind == "upstream"


def test_rate_limits_reach_the_openai_client_as_rate_limit_errors(jetty, alice, upstream):
    with pytest.raises(openai.RateLimitError):
        client(jetty, alice.token).chat.completions.create(model="openai/fake-429", messages=HELLO["messages"])


def test_an_unreachable_provider_is_502(jetty, alice, transactional_db):
    key = ProviderKey(
        org=alice.org, provider="openai", api_base=f"http://{RECEIVER_HOST}:{free_port(RECEIVER_HOST)}/v1"
    )
    key.set_key("sk-x")
    key.save()
    status, body, _ = post(jetty, alice.token, {**HELLO, "model": "openai/gpt-4o-mini"})
    assert status == 502
    assert_openai_error(body, "upstream_unreachable")


def test_a_provider_without_a_key_is_refused_before_calling_out(jetty, alice, monkeypatch):
    status, body, _ = post(jetty, alice.token, {**HELLO, "model": "openai/gpt-4o-mini"})
    assert status == 400
    assert_openai_error(body, "provider_not_configured")
