"""Rate limits per API token: 429 in OpenAI's shape with ``Retry-After``, on the API and on the gateway, counted in
Redis or the database so every process sees the same count."""

from __future__ import annotations

import math
import shutil
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import openai
import pytest
from django.db import connection

from orgs import ratelimit
from orgs.models import ApiToken, RateLimitCounter
from runs.models import RunToken
from tests.conftest import api_for, client
from tests.factories import make_run
from tests.support import servers

LIMIT = 3
WINDOW_S = 2.0


def fresh_window(length: float = WINDOW_S) -> None:
    """Wait until a window has just begun, so a short burst of requests falls in one window."""
    now = time.time()
    time.sleep(math.ceil(now / length) * length - now + 0.05)


def assert_rate_limited(status: int, headers, body: dict) -> int:
    assert status == 429
    assert body["error"]["type"] == "requests" and body["error"]["code"] == "rate_limit_exceeded"
    assert f"{LIMIT} requests per" in body["error"]["message"]
    retry_after = int(headers["Retry-After"])
    assert 1 <= retry_after <= math.ceil(WINDOW_S)
    return retry_after


@pytest.fixture(scope="module")
def redis_url(tmp_path_factory):
    binary = shutil.which("redis-server")
    if binary is None:
        pytest.skip("redis-server is not installed")
    port = servers.free_port()
    workdir = tmp_path_factory.mktemp("redis")
    proc = subprocess.Popen(
        [binary, "--port", str(port), "--save", "", "--appendonly", "no", "--dir", str(workdir)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    url = f"redis://127.0.0.1:{port}/0"
    servers.wait_until(lambda: ratelimit._redis(url).ping(), 10, "redis-server", proc)
    yield url
    proc.terminate()
    proc.wait(10)


@pytest.fixture(params=["database", "redis"])
def limited(request, settings):
    """A low limit and a short window for in-process API calls, counted in the database or in Redis."""
    settings.JETTY_RATE_LIMIT_REQUESTS = LIMIT
    settings.JETTY_RATE_LIMIT_WINDOW_S = WINDOW_S
    settings.REDIS_URL = request.getfixturevalue("redis_url") if request.param == "redis" else ""
    return request.param


def test_the_api_answers_429_with_retry_after_over_the_limit(limited, alice_api):
    fresh_window()
    for _ in range(LIMIT):
        assert alice_api.get("/api/v1/collections").status_code == 200
    response = alice_api.get("/api/v1/collections")
    assert_rate_limited(response.status_code, response, response.json())


def test_other_tokens_have_their_own_limit(limited, alice, alice_api, bob_api):
    fresh_window()
    for _ in range(LIMIT + 1):
        alice_api.get("/api/v1/collections")
    assert alice_api.get("/api/v1/collections").status_code == 429
    assert bob_api.get("/api/v1/collections").status_code == 200
    _, second = ApiToken.generate(alice.org, name="second")
    assert api_for(second).get("/api/v1/collections").status_code == 200


def test_the_api_works_again_after_the_window(limited, alice_api):
    fresh_window()
    for _ in range(LIMIT):
        alice_api.get("/api/v1/collections")
    response = alice_api.get("/api/v1/collections")
    retry_after = assert_rate_limited(response.status_code, response, response.json())
    time.sleep(retry_after)
    assert alice_api.get("/api/v1/collections").status_code == 200


def test_requests_without_a_valid_token_are_not_counted(limited, alice_api):
    from rest_framework.test import APIClient

    anonymous = APIClient()
    anonymous.credentials(HTTP_AUTHORIZATION="Bearer jty_not-a-token")
    fresh_window()
    for _ in range(LIMIT + 2):
        assert anonymous.get("/api/v1/collections").status_code == 401
    assert alice_api.get("/api/v1/collections").status_code == 200


def test_a_zero_limit_turns_the_limit_off(settings, alice_api):
    settings.JETTY_RATE_LIMIT_REQUESTS = 0
    settings.REDIS_URL = ""
    for _ in range(20):
        assert alice_api.get("/api/v1/collections").status_code == 200
    assert not RateLimitCounter.objects.exists()


def test_the_database_counter_moves_to_each_new_window(db, settings):
    settings.REDIS_URL = ""
    assert [ratelimit.hit("k", 2, 10, now=100.0).count for _ in range(3)] == [1, 2, 3]
    later = ratelimit.hit("k", 2, 10, now=111.0)
    assert later.allowed and later.count == 1 and later.retry_after == 9
    assert RateLimitCounter.objects.get(key="k").window == 11


def count_in_a_thread(times: int) -> None:
    try:
        for _ in range(times):
            ratelimit.hit("shared", 1000, 60, now=6000.0)
    finally:
        connection.close()  # each thread has its own connection, as each process has


@pytest.mark.parametrize("backend", ["database", "redis"])
def test_no_count_is_lost_when_requests_count_at_once(backend, request, settings, transactional_db):
    settings.REDIS_URL = request.getfixturevalue("redis_url") if backend == "redis" else ""
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(count_in_a_thread, [25] * 4))
    assert ratelimit.hit("shared", 1000, 60, now=6000.0).count == 4 * 25 + 1


def test_retry_after_counts_whole_seconds_to_the_end_of_the_window():
    assert ratelimit.window_of(120.0, 60) == (2, 60)
    assert ratelimit.window_of(179.2, 60) == (2, 1)
    assert ratelimit.window_of(10.5, 2) == (5, 2)


# The live gateway, in its own server process with a low limit.


@pytest.fixture(scope="module")
def limited_jetty(process_env, logs, tmp_path_factory):
    port = servers.free_port()
    env = {
        **process_env,
        "JETTY_RATE_LIMIT_REQUESTS": str(LIMIT),
        "JETTY_RATE_LIMIT_WINDOW_S": str(WINDOW_S),
        "JETTY_PUBLIC_URL": f"http://127.0.0.1:{port}",
        "JETTY_TEST_PORT": str(port),
        "JETTY_GATEWAY_SOCKET": str(tmp_path_factory.mktemp("rate-limited-run") / "gw.sock"),
        "JETTY_SPOOL_DIR": str(tmp_path_factory.mktemp("rate-limited-spool")),
    }
    server = servers.start_daphne(env, logs / "daphne-rate-limited.log", port)
    yield server
    server.stop()


@pytest.fixture
def gateway(limited_jetty, transactional_db):
    return limited_jetty


def models(server, token: str) -> httpx.Response:
    return httpx.get(f"{server.url}/v1/models", headers={"Authorization": f"Bearer {token}"}, timeout=10)


def test_the_gateway_answers_429_with_retry_after_over_the_limit(gateway, alice, bob):
    fresh_window()
    for _ in range(LIMIT):
        assert models(gateway, alice.token).status_code == 200
    with pytest.raises(openai.RateLimitError) as raised:
        client(gateway, alice.token).chat.completions.create(
            model="scripted/default", messages=[{"role": "user", "content": "hi"}]
        )
    response = raised.value.response
    retry_after = assert_rate_limited(response.status_code, response.headers, response.json())
    assert models(gateway, bob.token).status_code == 200  # another token is unaffected

    time.sleep(retry_after)
    assert models(gateway, alice.token).status_code == 200


def test_the_gateway_limits_every_wire(gateway, alice):
    fresh_window()
    for _ in range(LIMIT):
        models(gateway, alice.token)
    response = httpx.post(
        f"{gateway.url}/v1/messages",
        headers={"x-api-key": alice.token, "anthropic-version": "2023-06-01"},
        json={"model": "scripted/default", "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]},
        timeout=10,
    )
    assert response.status_code == 429 and response.json()["error"]["type"] == "rate_limit_error"
    assert int(response.headers["retry-after"]) >= 1


def test_the_api_and_the_gateway_count_into_one_window_across_processes(gateway, settings, alice):
    """The test process's API calls and the server's gateway calls share the token's count."""
    settings.JETTY_RATE_LIMIT_REQUESTS = LIMIT
    settings.JETTY_RATE_LIMIT_WINDOW_S = WINDOW_S
    api = api_for(alice.token)
    fresh_window()
    for _ in range(LIMIT - 1):
        assert api.get("/api/v1/collections").status_code == 200
    assert models(gateway, alice.token).status_code == 200
    assert models(gateway, alice.token).status_code == 429
    assert api.get("/api/v1/collections").status_code == 429


def test_a_runs_own_token_is_not_limited(gateway, alice):
    run = make_run(alice.org, status="running", task="limited")
    run_token = RunToken.mint(run, 60)
    fresh_window()
    for _ in range(LIMIT * 2):
        assert models(gateway, run_token).status_code == 200
