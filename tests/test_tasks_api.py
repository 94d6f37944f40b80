"""Collections, versioned tasks and collection environments through the API: org-scoped, validated on save,
secrets never returned in clear."""

from __future__ import annotations

import pytest

from orgs.models import ApiToken, Collection, CollectionVariable
from runs.models import Task

from .conftest import api_for
from .factories import STORED_RUNBOOK as RUNBOOK

pytestmark = pytest.mark.django_db(transaction=True)


def create(api, name="docs"):
    return api.post("/api/v1/collections", {"name": name, "description": "d"}, format="json")


def push(api, name="greet", collection="docs", **content):
    return api.post(f"/api/v1/collections/{collection}/tasks", {"name": name, **content}, format="json")


def test_it_creates_and_lists_collections(alice_api):
    assert create(alice_api).status_code == 201
    assert create(alice_api).status_code == 409
    assert create(alice_api, "Bad Name!").json()["error"]["param"] == "name"
    names = [c["name"] for c in alice_api.get("/api/v1/collections").json()["data"]]
    assert names == ["docs"]


def test_it_rejects_other_orgs(alice_api, bob_api):
    create(alice_api)
    push(alice_api, runbook=RUNBOOK)
    assert bob_api.get("/api/v1/collections").json()["data"] == []
    for url in (
        "/api/v1/collections/docs",
        "/api/v1/collections/docs/environment",
        "/api/v1/collections/docs/tasks",
        "/api/v1/collections/docs/tasks/greet",
        "/api/v1/collections/docs/tasks/greet/versions",
        "/api/v1/collections/docs/tasks/greet/versions/1",
        "/api/v1/collections/docs/tasks/greet/diff",
        "/api/v1/collections/docs/secrets/check?names=A",
    ):
        assert bob_api.get(url).status_code == 404, url
    assert bob_api.post("/api/v1/run/docs/greet", {}, format="json").status_code == 404
    assert bob_api.post("/api/v1/run-sync/docs/greet", {}, format="json").status_code == 404
    assert bob_api.patch("/api/v1/collections/docs/environment", {"env": {"A": "x"}}, format="json").status_code == 404
    assert bob_api.delete("/api/v1/collections/docs/tasks/greet").status_code == 404
    assert Task.objects.filter(name="greet").exists() and not CollectionVariable.objects.exists()


def test_a_collection_scoped_token_sees_its_collection_only(alice, alice_api):
    create(alice_api, "one")
    create(alice_api, "two")
    token, plain = ApiToken.generate(alice.org, name="scoped")
    token.collection = Collection.objects.get(org=alice.org, name="one")
    token.save()
    scoped = api_for(plain)
    assert [c["name"] for c in scoped.get("/api/v1/collections").json()["data"]] == ["one"]
    assert scoped.get("/api/v1/collections/two/tasks").status_code == 404
    assert push(scoped, collection="two", runbook=RUNBOOK).status_code == 404
    assert push(scoped, collection="one", runbook=RUNBOOK).status_code == 201
    assert create(scoped, "three").status_code == 403


def test_every_push_is_a_new_version_and_versions_diff(alice_api):
    create(alice_api)
    first = push(alice_api, runbook=RUNBOOK, message="first")
    assert first.status_code == 201 and first.json()["version"]["version"] == 1
    assert first.json()["version"]["validation"]["valid"] is True
    same = push(alice_api, runbook=RUNBOOK)
    assert same.json()["version"]["version"] == 1  # nothing changed, nothing new stored
    changed = RUNBOOK.replace("Count the words", "Count all the words")
    second = push(alice_api, runbook=changed, files={"README.md": "# Greet\n"})
    assert second.json()["version"]["version"] == 2
    versions = alice_api.get("/api/v1/collections/docs/tasks/greet/versions").json()["data"]
    assert [v["version"] for v in versions] == [2, 1]
    old = alice_api.get("/api/v1/collections/docs/tasks/greet/versions/1").json()
    assert old["runbook"] == RUNBOOK and old["message"] == "first"
    diff = alice_api.get("/api/v1/collections/docs/tasks/greet/diff").json()
    assert "-Count the words of a greeting" in diff["diff"] and "+Count all the words of a greeting" in diff["diff"]
    assert diff["from"] == 1 and diff["to"] == 2
    assert alice_api.get("/api/v1/collections/docs/tasks/greet/diff?from=9").status_code == 404
    task = alice_api.get("/api/v1/collections/docs/tasks/greet").json()
    assert task["latest_version"] == 2 and task["version"]["files"] == {"README.md": "# Greet\n"}


def test_the_validator_runs_on_every_save(alice_api):
    create(alice_api)
    response = push(alice_api, runbook="# no frontmatter\n")
    assert response.status_code == 422
    assert (
        response.json()["error"]["code"] == "invalid_runbook" and "frontmatter" in response.json()["error"]["message"]
    )
    assert push(alice_api).status_code == 400  # neither runbook nor workflow
    assert push(alice_api, runbook=RUNBOOK, workflow={"steps": []}).status_code == 400
    assert not Task.objects.exists()
    push(alice_api, runbook=RUNBOOK)
    kind_clash = push(
        alice_api, workflow={"steps": ["a"], "step_configs": {"a": {"type": "text_echo", "params": {"text": "x"}}}}
    )
    assert kind_clash.status_code == 409


def test_environment_patch_merges_and_null_deletes_and_secrets_stay_hidden(alice_api):
    create(alice_api)
    url = "/api/v1/collections/docs/environment"
    body = alice_api.patch(
        url, {"env": {"REGION": "eu", "MODE": "fast"}, "secrets": {"API_TOKEN": "tok-9f8e7d6c5b"}}, format="json"
    ).json()
    assert body["env"] == {"MODE": "fast", "REGION": "eu"}
    assert body["secrets"]["API_TOKEN"]["set"] is True and "tok-9f8e7d6c5b" not in str(body)
    body = alice_api.patch(url, {"env": {"MODE": None, "LEVEL": "3"}}, format="json").json()
    assert body["env"] == {"LEVEL": "3", "REGION": "eu"} and "API_TOKEN" in body["secrets"]
    stored = CollectionVariable.objects.get(name="API_TOKEN")
    assert "tok-9f8e7d6c5b" not in stored.value_encrypted and stored.value == "tok-9f8e7d6c5b"
    assert "tok-9f8e7d6c5b" not in alice_api.get(url).content.decode()
    check = alice_api.get("/api/v1/collections/docs/secrets/check?names=API_TOKEN,OTHER").json()
    assert check == {"secrets": {"API_TOKEN": True, "OTHER": False}, "missing": ["OTHER"], "ok": False}
    alice_api.patch(url, {"secrets": {"API_TOKEN": None}}, format="json")
    assert not CollectionVariable.objects.filter(name="API_TOKEN").exists()


@pytest.mark.parametrize(
    ("body", "param"),
    [
        ({"env": {"1BAD": "x"}}, "env.1BAD"),
        ({"env": {"A": 3}}, "env.A"),
        ({"secrets": "x"}, "secrets"),
        ({"colour": {}}, None),
    ],
)
def test_bad_environment_changes_are_refused_and_change_nothing(alice_api, body, param):
    create(alice_api)
    response = alice_api.patch("/api/v1/collections/docs/environment", body, format="json")
    assert response.status_code == 400 and response.json()["error"]["param"] == param
    assert not CollectionVariable.objects.exists()


def test_running_a_task_with_bad_input_is_refused(alice_api):
    create(alice_api)
    push(alice_api, runbook=RUNBOOK)
    for body, param in (
        ({"init_params": "not json"}, "init_params"),
        ({"init_params": {"name": "ada"}, "webhook_url": "ftp://x"}, "webhook_url"),
        ({"init_params": {"name": "ada"}, "webhook_url": "https://example.test/h"}, "webhook_secret"),
        ({"init_params": {"name": "ada"}, "secret_params": {"A": 1}}, "secret_params"),
        ({"init_params": {"name": "ada"}, "agent": "nope"}, "agent"),
        ({"init_params": {}}, "init_params"),
        ({"init_params": {"name": "ada", "extra": 1}}, "init_params"),
        ({"init_params": {"name": "ada"}}, "secret_params"),  # the runbook's required secret is set nowhere
    ):
        response = alice_api.post("/api/v1/run/docs/greet", body, format="json")
        assert response.status_code == 400 and response.json()["error"]["param"] == param, (body, response.json())
    assert alice_api.post("/api/v1/run/docs/nope", {}, format="json").status_code == 404
    assert not alice_api.get("/api/v1/runs").json()["results"]
