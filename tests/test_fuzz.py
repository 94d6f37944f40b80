"""Fuzzing the API: schemathesis generates requests for every operation in the served OpenAPI schema and sends
them to the live server; none may end in a 5xx or in an answer the schema does not describe. By hand, the bodies a
fuzzer rarely makes (malformed JSON, huge, deeply nested, bad unicode) must get a 4xx in OpenAI's error shape and
change nothing."""

from __future__ import annotations

import json
import os
import threading
import time
import urllib.error
import urllib.request
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
import requests
import schemathesis
from django.apps import apps
from hypothesis import HealthCheck, Phase, Verbosity, given, seed, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.errors import FailureGroup, SerializationNotPossible
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.factories import REVIEW_CRITERIA, STORED_RUNBOOK, make_rubric, make_run
from tests.support.servers import RECEIVER_HOST

SCHEMA_PATH = "/api/schema?format=json"
CHECKS = [not_a_server_error, status_code_conformance, content_type_conformance, response_schema_conformance]
# Generated cases per operation and mode; hypothesis stops early once an operation has nothing new to vary.
EXAMPLES = 20
OUTSIDER_EXAMPLES = 5
MIN_CASES = 1000
SEED = int(os.environ.get("JETTY_FUZZ_SEED", "20261129"))
TIMEOUT_S = 20


def auth(token: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {token}"}


# Exporting sends the spans to the endpoint in the request: a local collector, and a few cases only.
OTLP_EXPORT = "POST /api/v1/runs/{public_id}/export/otlp"
FEWER_EXAMPLES = {OTLP_EXPORT: 4}


class Collector(BaseHTTPRequestHandler):
    """An OTLP/HTTP collector that takes whatever it is sent."""

    def do_POST(self) -> None:
        self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.send_response(200)
        self.send_header("Content-Type", "application/x-protobuf")
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def collector():
    server = ThreadingHTTPServer((RECEIVER_HOST, 0), Collector)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://{RECEIVER_HOST}:{server.server_address[1]}/v1/traces"
    server.shutdown()


def refused_by_twisted(case: Any, response: Any) -> bool:
    """Daphne's HTTP layer (Twisted) parses multipart bodies itself, and answers one it cannot parse (a body with no
    parts at all) with a bare 400, no headers and no body, before Jetty sees the request."""
    return (
        response.status_code == 400
        and not response.content
        and "content-type" not in response.headers
        and (case.media_type or "").startswith("multipart/")
    )


class Fuzz:
    """Sends generated cases for one schema and keeps what went wrong, once per operation and kind of failure."""

    def __init__(self, schema: Any, base_url: str, token: str, collector: str):
        self.schema, self.base_url, self.headers, self.collector = schema, base_url, auth(token), collector
        self.session = requests.Session()
        self.cases: Counter[str] = Counter()
        self.failures: dict[tuple[str, str], str] = {}
        self.refused = 0

    def run(
        self,
        operation: Any,
        mode: GenerationMode,
        examples: int,
        path_parameters: dict | None = None,
        outsider: bool = False,
    ) -> None:
        label = operation.label

        @seed(SEED)
        @settings(
            max_examples=examples,
            deadline=None,
            database=None,
            phases=[Phase.explicit, Phase.generate],
            suppress_health_check=list(HealthCheck),
            verbosity=Verbosity.quiet,
        )
        @given(operation.as_strategy(generation_mode=mode, path_parameters=path_parameters))
        def send(case: Any) -> None:
            self.send(label, case, outsider)

        try:
            send()
        except (Unsatisfiable, SerializationNotPossible):
            pass  # nothing (more) of this mode can be made for the operation: the other mode still covers it

    def send(self, label: str, case: Any, outsider: bool = False) -> None:
        self.cases[label] += 1
        if label == OTLP_EXPORT and isinstance(case.body, dict) and "endpoint" in case.body:
            case.body["endpoint"] = self.collector  # not some random host on the internet
        try:
            response = case.call(base_url=self.base_url, session=self.session, headers=self.headers, timeout=TIMEOUT_S)
        except requests.RequestException as exc:
            self.failures.setdefault((label, type(exc).__name__), case.as_curl_command(base_url=self.base_url))
            return
        if refused_by_twisted(case, response):
            self.refused += 1
            return
        if outsider and response.status_code < 400:
            curl = case.as_curl_command(headers=self.headers, base_url=self.base_url)
            self.failures.setdefault((label, "another org's run answered"), f"{response.status_code}\n    {curl}")
        try:
            case.validate_response(response, checks=CHECKS, headers=self.headers)
        except FailureGroup as group:
            curl = case.as_curl_command(headers=self.headers, base_url=self.base_url)
            for failure in group.exceptions:
                self.failures.setdefault((label, failure.title), f"{failure.message}\n    {curl}")

    def report(self) -> str:
        return "\n\n".join(f"{label}: {title}\n{detail}" for (label, title), detail in sorted(self.failures.items()))


def known_resources(server, token: str, org: Any) -> dict[str, dict[str, Any]]:
    """Alice's own collection, task, run and rubric, as path parameters by path prefix, so that generated
    requests get past the 404s too."""
    headers = auth(token)
    requests.post(f"{server.url}/api/v1/collections", json={"name": "fuzz"}, headers=headers, timeout=30)
    pushed = requests.post(
        f"{server.url}/api/v1/collections/fuzz/tasks",
        json={"name": "hello", "runbook": STORED_RUNBOOK},
        headers=headers,
        timeout=30,
    )
    assert pushed.status_code in (200, 201), pushed.text
    run = make_run(org)
    make_rubric(org)
    return {
        "/api/v1/collections/": {"name": "fuzz", "task": "hello", "number": 1},
        "/api/v1/run/": {"name": "fuzz", "task": "hello"},
        "/api/v1/runs/": {"public_id": run.public_id},
        "/api/v1/rubrics/": {"ref": "quality"},
        "/v1/models/": {"model": "scripted/default"},
    }


def known_parameters(operation: Any, known: dict[str, dict[str, Any]]) -> dict[str, Any] | None:
    names = {p.name for p in operation.path_parameters}
    for prefix, values in known.items():
        if operation.path.startswith(prefix):
            return {name: value for name, value in values.items() if name in names} or None
    return None


# Waits up to JETTY_RUN_SYNC_WAIT_S for a worker, and the fuzz starts none: its generated (404) cases remain.
NOT_WITH_KNOWN_PARAMETERS = {"POST /api/v1/run-sync/{name}/{task}"}


@pytest.mark.slow
def test_fuzzing_every_operation_finds_no_server_error_and_no_answer_outside_the_schema(jetty, alice, bob, collector):
    started = time.monotonic()
    schema = schemathesis.openapi.from_url(f"{jetty.url}{SCHEMA_PATH}", headers=auth(alice.token), timeout=30)
    operations = [result.ok() for result in schema.get_all_operations()]
    assert len(operations) > 40, "the served schema lost its operations"
    # Deletes go last, so the other operations still find what they look for.
    operations.sort(key=lambda op: op.method.upper() == "DELETE")
    fuzz = Fuzz(schema, jetty.url, alice.token, collector)
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            fuzz.run(operation, mode, FEWER_EXAMPLES.get(operation.label, EXAMPLES))
    known = known_resources(jetty, alice.token, alice.org)
    for operation in operations:
        parameters = known_parameters(operation, known)
        if parameters and operation.label not in NOT_WITH_KNOWN_PARAMETERS:
            for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
                fuzz.run(operation, mode, FEWER_EXAMPLES.get(operation.label, EXAMPLES), parameters)
    # Another org's run, under every operation on runs: never anything but an error (a 404 once the body is valid).
    theirs = make_run(bob.org).public_id
    for operation in operations:
        if operation.path.startswith("/api/v1/runs/{public_id}"):
            fuzz.run(operation, GenerationMode.POSITIVE, OUTSIDER_EXAMPLES, {"public_id": theirs}, outsider=True)
    elapsed = time.monotonic() - started
    total = sum(fuzz.cases.values())
    print(f"fuzz: {total} cases, {len(operations)} operations, {elapsed:.0f}s; {fuzz.refused} refused by Twisted")
    assert not fuzz.failures, fuzz.report()
    assert {op.label for op in operations} == set(fuzz.cases), "some operations were never exercised"
    assert total >= MIN_CASES, f"only {total} cases were generated"


# By hand: bodies a fuzzer rarely makes.

ONE_MIB = 1024 * 1024  # the test server's JETTY_MAX_BODY_BYTES
# A body each route accepts, with the text "@@" where a test puts a string of its own.
ROUTES = {
    "/v1/chat/completions": {"model": "scripted/default", "messages": [{"role": "user", "content": "@@"}]},
    "/api/v1/collections": {"name": "fuzzed", "description": "@@"},
    "/api/v1/runbooks/validate": {"runbook": "@@"},
    "/api/v1/runs/ingest": {
        "run": {"id": "fuzzed-1", "task": "fuzzed", "status": "succeeded", "created": 1_700_000_000},
        "events": [{"kind": "log", "ts": 1_700_000_000, "payload": {"text": "@@"}}],
    },
    "/api/v1/rubrics": {"name": "fuzzed", "criteria": [{**REVIEW_CRITERIA[0], "description": "@@"}]},
}


def body_for(path: str, text: bytes = b'"fine"') -> bytes:
    """The route's body as JSON, with ``text`` (the raw JSON of a string) in its free text field."""
    return json.dumps(ROUTES[path]).encode().replace(b'"@@"', text)


def post_raw(server, token: str, path: str, data: bytes) -> tuple[int, dict]:
    headers = {"Content-Type": "application/json", **auth(token)}
    request = urllib.request.Request(f"{server.url}{path}", data=data, headers=headers, method="POST")
    try:
        with urllib.request.urlopen(request, timeout=30) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


def row_counts() -> dict[str, int]:
    """How many rows each of Jetty's own models holds (the rate limiter's counters aside: every request counts)."""
    return {
        model._meta.label: model.objects.count()
        for name in ("orgs", "trajectories", "runs", "evals")
        for model in apps.get_app_config(name).get_models()
        if model._meta.label != "orgs.RateLimitCounter"
    }


BAD_BODIES = {
    "malformed JSON": lambda path: body_for(path)[:-1] + b",}",
    "not an object": lambda path: b'["a", "list"]',
    "over the size limit": lambda path: body_for(path, json.dumps("x" * (ONE_MIB + 1)).encode()),
    "nested 10,000 deep": lambda path: body_for(path)[:-1] + b', "deep": ' + b"[" * 10_000 + b"]" * 10_000 + b"}",
    "NaN": lambda path: body_for(path)[:-1] + b', "temperature": NaN}',
    "invalid UTF-8": lambda path: body_for(path, b'"bad \xff\xfe bytes"'),
    "a lone surrogate": lambda path: body_for(path, b'"bad \\ud800 text"'),
    "a lone low surrogate": lambda path: body_for(path, b'"\\udc00"'),
}


@pytest.mark.parametrize("path", ROUTES)
def test_the_good_bodies_are_accepted(jetty, alice, path):
    status, body = post_raw(jetty, alice.token, path, body_for(path))
    assert status in (200, 201), body


@pytest.mark.parametrize("kind", BAD_BODIES)
@pytest.mark.parametrize("path", ROUTES)
def test_bad_bodies_get_an_openai_error_and_change_nothing(jetty, alice, path, kind):
    before = row_counts()
    status, body = post_raw(jetty, alice.token, path, BAD_BODIES[kind](path))
    assert 400 <= status < 500, body
    if kind == "over the size limit":
        assert status == 413
    assert set(body) == {"error"}
    assert set(body["error"]) == {"message", "type", "param", "code"} and body["error"]["message"]
    time.sleep(0.2)  # the gateway records off the request path: give it the chance to (wrongly) store something
    assert row_counts() == before


# What the fuzz found, pinned down.


def test_cancelling_a_run_that_nothing_executes_is_a_conflict_not_a_crash(jetty, alice):
    run = make_run(alice.org, status="running")
    response = requests.post(f"{jetty.url}/api/v1/runs/{run.public_id}/cancel", headers=auth(alice.token), timeout=30)
    assert response.status_code == 409, response.text
    assert response.json()["error"]["code"] == "not_cancellable"
    finished = make_run(alice.org)
    response = requests.post(
        f"{jetty.url}/api/v1/runs/{finished.public_id}/cancel", headers=auth(alice.token), timeout=30
    )
    assert response.status_code == 200 and response.json()["status"] == "succeeded"


def test_an_upload_with_two_files_of_one_path_is_refused_and_stores_nothing(jetty, alice):
    before = row_counts()
    files = [("files", ("a.txt", b"one")), ("files", ("a.txt", b"two"))]
    response = requests.post(f"{jetty.url}/api/v1/sandbox/upload", files=files, headers=auth(alice.token), timeout=30)
    assert response.status_code == 400, response.text
    assert response.json()["error"]["code"] == "duplicate_path"
    assert row_counts() == before


@pytest.mark.parametrize("path", ROUTES)
def test_json_the_parser_takes_but_nested_too_deep_for_the_code_is_refused(jetty, alice, path):
    ok = b"[" * 100 + b"]" * 100
    assert post_raw(jetty, alice.token, path, body_for(path, ok))[0] < 500
    status, body = post_raw(jetty, alice.token, path, body_for(path, b"[" * 900 + b"]" * 900))
    assert status == 400 and body["error"]["code"] == "invalid_json", body


def test_otlp_headers_http_cannot_carry_are_refused_before_anything_is_sent(jetty, alice, collector):
    run = make_run(alice.org)
    url = f"{jetty.url}/api/v1/runs/{run.public_id}/export/otlp"
    for headers in ({"x-tenant": "acme\r\nx-injected: 1"}, {"x tenant": "acme"}, {"x-tenant": "acme\x00"}):
        body = {"endpoint": collector, "headers": headers}
        response = requests.post(url, json=body, headers=auth(alice.token), timeout=30)
        error = response.json()["error"]
        assert response.status_code == 400, response.text
        assert error["param"] == "headers" or "NUL character" in error["message"], error  # NULs: refused on parsing
    body = {"endpoint": collector, "headers": {"x-tenant": "acme"}}
    good = requests.post(url, json=body, headers=auth(alice.token), timeout=30)
    assert good.status_code == 200, good.text
