from __future__ import annotations

import json
import os
import time
from dataclasses import dataclass
from pathlib import Path

import openai
import pytest
from django.contrib.auth import get_user_model
from django.db import connection

from orgs.models import ApiToken, Membership, Org, ProviderKey, Role
from tests.support import secrets_scan, servers
from tests.support.generic_clis import GENERIC_CLIS
from trajectories.models import Run


def database_url() -> str:
    """The URL of the test database, for processes the tests start."""
    s = connection.settings_dict
    if s["ENGINE"] == "django.db.backends.sqlite3":
        return f"sqlite:///{s['NAME']}"
    auth = s["USER"] + (f":{s['PASSWORD']}" if s.get("PASSWORD") else "")
    return f"postgresql://{auth}@{s['HOST'] or '127.0.0.1'}:{s['PORT'] or 5432}/{s['NAME']}"


@pytest.fixture(scope="session")
def process_env(django_db_setup, django_db_blocker, tmp_path_factory) -> dict[str, str]:
    """Environment for server processes: the test database, and quick timeouts so faults show fast."""
    with django_db_blocker.unblock():
        url = database_url()
    env = dict(os.environ)
    env.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)  # set for the browser tests' own process only
    port = servers.free_port()
    env.update(
        {
            "JETTY_PUBLIC_URL": f"http://127.0.0.1:{port}",
            "JETTY_TEST_PORT": str(port),
            "JETTY_SANDBOX_ROOT": str(Path(__file__).resolve().parents[1] / "var" / f"test-sandboxes-{port}"),
            "JETTY_GATEWAY_SOCKET": str(Path(__file__).resolve().parents[1] / "var" / f"test-run-{port}" / "gw.sock"),
            "DATABASE_URL": url,
            "JETTY_GATEWAY_TIMEOUT_S": "3",
            "JETTY_AUTH_CACHE_S": "1",
            "JETTY_MAX_BODY_BYTES": str(1024 * 1024),
            "JETTY_RECORD_FLUSH_S": "0.05",
            "JETTY_SPOOL_DIR": str(tmp_path_factory.mktemp("spool")),
            "DB_CONN_MAX_AGE": "0",
            "JETTY_RUN_STALLED_S": "6",
            "JETTY_WEBHOOK_BACKOFF_S": "0.5",
            "JETTY_WEBHOOK_MAX_ATTEMPTS": "3",
            "JETTY_GENERIC_AGENTS": json.dumps(GENERIC_CLIS),
            # The outbound policy admits the suite's receivers, never the platform's own 127.0.0.1.
            "JETTY_OUTBOUND_ALLOW": servers.RECEIVER_HOST,
            # Counted but out of reach: one test's token may make thousands of requests (the fuzz); the limit
            # itself is tested against a server of its own (test_rate_limits.py).
            "JETTY_RATE_LIMIT_REQUESTS": "1000000000",
            # A platform writer's event that does not fit its kind's schema fails loudly (trajectories/schemas.py).
            "JETTY_STRICT_EVENTS": "1",
        }
    )
    return env


@pytest.fixture(scope="session")
def logs(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("logs")


@pytest.fixture(scope="session")
def fake_upstream(logs):
    server = servers.start_fake_upstream(logs / "fake-upstream.log")
    yield server
    server.stop()


@pytest.fixture(scope="session")
def jetty_server(process_env, logs):
    server = servers.start_daphne(process_env, logs / "daphne.log", int(process_env["JETTY_TEST_PORT"]))
    yield server
    server.stop()


@pytest.fixture(scope="session")
def worker_process(jetty_server, process_env, logs):
    """A Celery worker process executing runs, with the live server as its sandboxes' gateway."""
    env = {**process_env, "JETTY_SANDBOX_BACKEND": "bubblewrap"}
    worker = servers.start_celery_worker(env, logs / "celery-worker-bubblewrap.log")
    worker.backend = "bubblewrap"
    yield worker
    worker.stop()


def use_backend(worker: servers.Process, backend: str, process_env: dict, logs: Path) -> None:
    """Replace the session's worker with one whose runs use this sandbox backend."""
    if getattr(worker, "backend", None) == backend and worker.proc.poll() is None:
        return
    worker.stop()
    fresh = servers.start_celery_worker(
        {**process_env, "JETTY_SANDBOX_BACKEND": backend}, logs / f"celery-worker-{backend}-{time.time():.0f}.log"
    )
    worker.proc, worker.log, worker.backend = fresh.proc, fresh.log, backend


@pytest.fixture
def worker(worker_process, jetty, process_env, logs):
    use_backend(worker_process, "bubblewrap", process_env, logs)
    return worker_process


@pytest.fixture(params=["bubblewrap", "docker"])
def each_backend_worker(request, worker_process, jetty, process_env, logs):
    """The worker, once per sandbox backend."""
    use_backend(worker_process, request.param, process_env, logs)
    return worker_process


@pytest.fixture
def jetty(jetty_server, transactional_db, process_env):
    """Jetty served by daphne on a free port, against the test database.

    After each test it waits for the server to store what it recorded, so the database flush between tests
    never races the recorder.
    """
    yield jetty_server
    spool = Path(process_env["JETTY_SPOOL_DIR"])
    time.sleep(0.05)
    servers.wait_until(lambda: not list(spool.glob("*.jsonl")), 10, "recorder to drain")


@dataclass
class Tenant:
    org: Org
    owner: object
    member: object
    viewer: object
    token: str
    api_token: ApiToken


def make_tenant(name: str) -> Tenant:
    User = get_user_model()
    org = Org.objects.create(name=name)
    people = {}
    for role in (Role.OWNER, Role.MEMBER, Role.VIEWER):
        user = User.objects.create_user(f"{name}-{role}", password="pw-" + name)
        Membership.objects.create(org=org, user=user, role=role)
        people[role] = user
    api_token, plain = ApiToken.generate(org, name="test")
    return Tenant(org, people[Role.OWNER], people[Role.MEMBER], people[Role.VIEWER], plain, api_token)


@pytest.fixture
def alice(transactional_db) -> Tenant:
    return make_tenant("acme")


@pytest.fixture
def bob(transactional_db) -> Tenant:
    """Another org: the outsider in isolation tests."""
    return make_tenant("globex")


def api_for(token: str):
    """A DRF test client that calls the API with this token (in-process, no server)."""
    from rest_framework.test import APIClient

    api = APIClient()
    api.credentials(HTTP_AUTHORIZATION=f"Bearer {token}")
    return api


@pytest.fixture
def alice_api(alice):
    return api_for(alice.token)


@pytest.fixture
def bob_api(bob):
    return api_for(bob.token)


def connect_upstream(tenant: Tenant, upstream_url: str) -> None:
    """Give the org keys for providers served by the fake upstream: `openai` (direct) and `hosted_vllm` (litellm)."""
    for provider in ("openai", "hosted_vllm"):
        key = ProviderKey(org=tenant.org, provider=provider, api_base=f"{upstream_url}/v1", model_names=["fake"])
        key.set_key("sk-upstream-secret-0123456789")
        key.save()


@pytest.fixture
def upstream(alice, fake_upstream) -> str:
    connect_upstream(alice, fake_upstream.url)
    return fake_upstream.url


def client(server, token: str) -> openai.OpenAI:
    return openai.OpenAI(base_url=f"{server.url}/v1", api_key=token, max_retries=0, timeout=30)


@pytest.fixture
def alice_client(jetty, alice) -> openai.OpenAI:
    return client(jetty, alice.token)


def wait_for_run(public_id: str, timeout: float = 10.0) -> Run:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        run = Run.objects.filter(public_id=public_id).first()
        if run is not None:
            return run
        time.sleep(0.05)
    raise AssertionError(f"run {public_id} was not recorded within {timeout}s")


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_teardown(item, nextitem):
    """Before a test's rows are flushed, scan everything it stored for credentials (tests/support/secrets_scan.py)."""
    uses_database = {"db", "transactional_db"} & set(getattr(item, "fixturenames", ())) or item.get_closest_marker(
        "django_db"
    )
    if uses_database:
        secrets_scan.scan_database(item.nodeid)
    yield


def pytest_configure(config):
    from django.conf import settings

    # Hashing passwords properly takes half a second per user; tests make many users.
    # (PBKDF2 stays known so a test can give a user a password the live server, with its defaults, accepts.)
    settings.PASSWORD_HASHERS = [
        "django.contrib.auth.hashers.MD5PasswordHasher",
        "django.contrib.auth.hashers.PBKDF2PasswordHasher",
    ]
    # Steps and webhooks run in process too: the same receivers are admitted as for the server processes.
    settings.JETTY_OUTBOUND_ALLOW = [servers.RECEIVER_HOST]
    settings.JETTY_STRICT_EVENTS = True  # as for the server processes (process_env)


@pytest.fixture(scope="module")
def chromium():
    """One headless Chromium per test module; each test gets its own context (cookies, storage). Not for the
    whole session: Playwright's event loop would be running under every later test."""
    from playwright.sync_api import sync_playwright

    from tests.support.browser import launch

    # Playwright's sync API keeps an event loop in this thread; the tests' own ORM calls are still synchronous.
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    with sync_playwright() as playwright:
        browser = launch(playwright)
        yield browser
        browser.close()
    os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)


@pytest.fixture
def browser(chromium, jetty):
    """A fresh browser context against the live server; a failed test leaves a screenshot behind."""
    context = chromium.new_context(base_url=jetty.url, viewport={"width": 1400, "height": 900})
    context.set_default_timeout(15_000)
    page = context.new_page()
    page.errors = []  # type: ignore[attr-defined]
    page.on("pageerror", lambda error: page.errors.append(str(error)))  # type: ignore[attr-defined]
    yield page
    context.close()
