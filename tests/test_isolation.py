"""The isolation matrix over every API operation in the served schema: another org's token, a revoked or expired
token, and a token scoped to another collection never read or change the org's objects (404, or 401 for dead
tokens), and nothing they send changes a row."""

from __future__ import annotations

import re
from datetime import timedelta

import pytest
from django.core.files.base import ContentFile
from django.utils import timezone
from drf_spectacular.generators import SchemaGenerator

from evals.models import Dataset
from orgs.models import ApiToken, Collection, public_code
from tests.conftest import api_for
from tests.factories import make_rubric, make_run
from tests.test_ui_browser import SLOW_RUNBOOK
from tests.test_workflows import push
from trajectories.actions import record_label
from trajectories.models import Artifact, Label, Run

# Operations whose path names no org object: their isolation is checked by what they list, not by a 404.
UNSCOPED = {
    "/api/v1/collections",
    "/api/v1/datasets",
    "/api/v1/evals/agreement",
    "/api/v1/experiments",
    "/api/v1/files",
    "/api/v1/hill-climbs",
    "/api/v1/routines",
    "/api/v1/rubrics",
    "/api/v1/runbooks/validate",
    "/api/v1/runs",
    "/api/v1/runs/import",
    "/api/v1/runs/ingest",
    "/api/v1/sandbox/upload",
    "/api/v1/step-templates",
    "/v1/chat/completions",
    "/v1/models",
    "/v1/models/{model}",
}


def operations() -> list[tuple[str, str]]:
    schema = SchemaGenerator().get_schema(request=None, public=True)
    return [
        (method.upper(), path)
        for path, ops in schema["paths"].items()
        for method in ops
        if method in ("get", "post", "put", "patch", "delete")
    ]


@pytest.fixture
def world(alice, alice_api):
    """One of each of the org's objects, made the way users make them."""
    assert push(alice_api, "demo", "greet", runbook=SLOW_RUNBOOK).status_code == 201
    routine = alice_api.post("/api/v1/collections/demo/tasks/greet/routines", {"cadence": "daily"}, format="json")
    assert routine.status_code == 201, routine.content
    run = make_run(alice.org, task="greet", events=3)
    Artifact.objects.create(run=run, path="out.txt", size=2, sha256="0" * 64, file=ContentFile(b"hi", name="out.txt"))
    label = record_label(run, "eval.pass", True, source="human", author="acme-owner")
    upload = alice_api.post("/api/v1/sandbox/upload", {"files": [ContentFile(b"x", name="n.txt")]}, format="multipart")
    assert upload.status_code == 201, upload.content
    rubric = make_rubric(alice.org)
    dataset = Dataset.objects.create(public_id=public_code("ds"), org=alice.org, name="set")
    values = {
        "name": "demo",
        "task": "greet",
        "number": "1",
        "label_id": str(label.pk),
        "path": "out.txt",
        "key": upload.json()["file_paths"][0],
        "action": "pause",
    }
    by_prefix = {
        "/api/v1/routines/": routine.json()["id"],
        "/api/v1/runs/": run.public_id,
        "/api/v1/rubrics/": rubric.public_id,
        "/api/v1/datasets/": dataset.public_id,
        "/api/v1/experiments/": "exp_" + "0" * 20,  # (none made here: an unknown id must be a 404 for everyone)
        "/api/v1/hill-climbs/": "hc_" + "0" * 20,
    }
    return {"values": values, "by_prefix": by_prefix, "run": run}


def fill(path: str, world) -> str:
    def value(match: re.Match) -> str:
        name = match.group(1)
        if name in ("public_id", "ref"):
            return next(v for prefix, v in world["by_prefix"].items() if path.startswith(prefix))
        return world["values"][name]

    return re.sub(r"\{(\w+)\}", value, path)


def counts() -> dict[str, int]:
    from runs.models import Job, Routine, Task

    return {m.__name__: m.objects.count() for m in (Run, Label, Task, Routine, Job, Collection, Dataset)}


def call(api, method: str, url: str):
    body = {"at": 1, "key": "x", "value": 1, "runbook": "# x", "name": "x"} if method != "GET" else None
    return getattr(api, method.lower())(url, body, format="json") if body else api.get(url)


def test_every_operation_is_a_404_for_another_org(world, bob):
    outsider = api_for(bob.token)
    before = counts()
    checked = []
    for method, path in operations():
        if path in UNSCOPED:
            continue
        url = fill(path, world)
        response = call(outsider, method, url)
        assert response.status_code == 404, f"{method} {url}: {response.status_code} {response.content[:200]!r}"
        assert set(response.json()) == {"error"}
        checked.append((method, path))
    assert counts() == before
    assert len(checked) >= 35


def test_lists_show_nothing_of_another_org(world, bob):
    outsider = api_for(bob.token)
    run = world["run"]
    for path in ("/api/v1/runs", "/api/v1/collections", "/api/v1/routines", "/api/v1/rubrics", "/api/v1/datasets"):
        response = outsider.get(path)
        assert response.status_code == 200, path
        body = response.content.decode()
        assert run.public_id not in body and "greet" not in body and "demo" not in body, path


@pytest.mark.parametrize("state", ["revoked", "expired"])
def test_a_dead_token_reaches_nothing(world, alice, state):
    token, plain = ApiToken.generate(alice.org, name=state)
    if state == "revoked":
        token.revoked_at = timezone.now()
    else:
        token.expires_at = timezone.now() - timedelta(seconds=1)
    token.save()
    dead = api_for(plain)
    before = counts()
    for method, path in operations():
        if path.startswith("/v1/"):
            continue  # the gateway's own routes are covered against the live server (test_gateway_errors)
        response = call(dead, method, fill(path, world) if "{" in path and path not in UNSCOPED else path)
        assert response.status_code == 401, f"{method} {path}: {response.status_code}"
        assert response.json()["error"]["code"] == "invalid_api_key" or response.json()["error"]["type"]
    assert counts() == before


def test_a_token_scoped_to_another_collection_sees_nothing_of_this_one(world, alice):
    other = Collection.objects.create(org=alice.org, name="other")
    _, plain = ApiToken.generate(alice.org, name="scoped", collection=other)
    scoped = api_for(plain)
    before = counts()
    for method, path in operations():
        if path in UNSCOPED or not path.startswith(("/api/v1/collections/", "/api/v1/run", "/api/v1/routines/")):
            continue
        url = fill(path, world)
        response = call(scoped, method, url)
        assert response.status_code == 404, f"{method} {url}: {response.status_code} {response.content[:200]!r}"
    assert counts() == before
    assert world["run"].public_id not in scoped.get("/api/v1/runs").content.decode()


def ui_routes() -> list[tuple[str, str]]:
    """Every web UI route that names an org object, with the view's name."""
    from django.urls import get_resolver

    routes = []
    for pattern in get_resolver().url_patterns:
        children = getattr(pattern, "url_patterns", None)
        for p in children if children is not None else [pattern]:
            route = str(getattr(pattern, "pattern", "")) + str(p.pattern) if children is not None else str(p.pattern)
            if "<" in route and not route.startswith(("api/", "admin/", "v1", "dashboards/")):
                routes.append((route, p.name or ""))
    return routes


@pytest.fixture
def ui_world(world, alice):
    from evals.actions import create_queue
    from tests.factories import make_rubric

    run = world["run"]
    queue = create_queue(alice.org, "q", make_rubric(alice.org, name="ui"), [run])
    values = {
        "public_id": run.public_id,
        "collection": "demo",
        "name": "greet",
        "seq": "1",
        "path": "out.txt",
        "sha256": "0" * 64,
        "position": "1",
        "version": "1",
    }
    return values, queue.public_id


def ui_url(route: str, values: dict[str, str], queue: str) -> str:
    def value(match: re.Match) -> str:
        name = match.group(2)
        return queue if name == "public_id" and route.startswith("labelling/") else values[name]

    return "/" + re.sub(r"<(\w+:)?(\w+)>", value, route)


def test_every_ui_page_is_a_404_for_another_org_and_writes_need_a_member(ui_world, alice, bob):
    from django.test import Client

    values, queue = ui_world
    outsider, viewer = Client(), Client()
    outsider.force_login(bob.owner)
    viewer.force_login(alice.viewer)
    before = counts()
    routes = ui_routes()
    assert len(routes) >= 18
    for route, _name in routes:
        url = ui_url(route, values, queue)
        for method in ("get", "post"):
            response = getattr(outsider, method)(url)
            assert response.status_code in (404, 405), f"outsider {method} {url}: {response.status_code}"
    writes = ["ui-run-cancel", "ui-run-replay", "ui-run-fork", "ui-task-run", "ui-adjudicate", "ui-queue-item"]
    for route, name in routes:
        if name in writes:
            url = ui_url(route, values, queue)
            assert viewer.post(url, {"at": "1"}).status_code == 403, f"viewer POST {url}"
    assert counts() == before
