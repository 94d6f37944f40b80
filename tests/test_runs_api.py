"""`/api/v1/runs`: org-scoped listing, filters, paging, detail and events after a cursor."""

from __future__ import annotations

import pytest

from orgs.models import ApiToken, Collection, Org
from tests.factories import make_run


@pytest.fixture
def acme(db):
    org = Org.objects.create(name="acme")
    _, token = ApiToken.generate(org)
    return org, token


@pytest.fixture
def globex(db):
    org = Org.objects.create(name="globex")
    _, token = ApiToken.generate(org)
    return org, token


def get(client, token: str, url: str, **params):
    return client.get(url, params, HTTP_AUTHORIZATION=f"Bearer {token}")


def test_it_lists_only_the_callers_runs(client, acme, globex):
    mine = make_run(acme[0])
    make_run(globex[0])
    response = get(client, acme[1], "/api/v1/runs")
    assert response.status_code == 200
    assert [r["id"] for r in response.json()["results"]] == [mine.public_id]


def test_it_rejects_requests_without_a_token(client, acme):
    response = client.get("/api/v1/runs")
    assert response.status_code == 401
    assert response.json()["error"]["code"] == "invalid_api_key"


def test_it_rejects_a_bad_token(client, acme):
    response = get(client, "jty_bogus", "/api/v1/runs")
    assert response.status_code == 401
    assert set(response.json()["error"]) == {"message", "type", "param", "code"}


@pytest.mark.parametrize(
    "field, value, expected",
    [
        ("task", "summarise", 1),
        ("model", "openai/gpt-4o", 1),
        ("status", "failed", 1),
        ("agent", "codex", 1),
    ],
)
def test_it_filters(client, acme, field, value, expected):
    org = acme[0]
    make_run(org, task="summarise", model="openai/gpt-4o", status="failed", agent="codex")
    make_run(org)
    results = get(client, acme[1], "/api/v1/runs", **{field: value}).json()["results"]
    assert len(results) == expected and results[0][field] == value


def test_it_rejects_an_unknown_status(client, acme):
    response = get(client, acme[1], "/api/v1/runs", status="exploded")
    assert response.status_code == 400
    assert response.json()["error"]["param"] == "status"


def test_it_pages_newest_first_with_a_cursor(client, acme):
    made = [make_run(acme[0]) for _ in range(5)]
    first = get(client, acme[1], "/api/v1/runs", limit=2).json()
    assert [r["id"] for r in first["results"]] == [made[4].public_id, made[3].public_id]
    second = client.get(first["next"], HTTP_AUTHORIZATION=f"Bearer {acme[1]}").json()
    assert [r["id"] for r in second["results"]] == [made[2].public_id, made[1].public_id]


def test_it_rejects_a_garbled_cursor(client, acme):
    response = get(client, acme[1], "/api/v1/runs", cursor="garbage")
    assert response.status_code == 400


def test_it_shows_one_run(client, acme):
    run = make_run(acme[0], task="one")
    body = get(client, acme[1], f"/api/v1/runs/{run.public_id}").json()
    assert body["id"] == run.public_id and body["task"] == "one" and body["last_seq"] == 3
    assert body["org"] == acme[0].public_id


def test_it_rejects_other_orgs_runs_with_404(client, acme, globex):
    theirs = make_run(globex[0])
    for url in (f"/api/v1/runs/{theirs.public_id}", f"/api/v1/runs/{theirs.public_id}/events"):
        response = get(client, acme[1], url)
        assert response.status_code == 404
        assert set(response.json()) == {"error"}


def test_it_pages_events_after_a_cursor(client, acme):
    run = make_run(acme[0], events=7)
    page = get(client, acme[1], f"/api/v1/runs/{run.public_id}/events", limit=3).json()
    assert [e["seq"] for e in page["data"]] == [1, 2, 3] and page["has_more"]
    rest = get(client, acme[1], f"/api/v1/runs/{run.public_id}/events", after=page["next_after"]).json()
    assert [e["seq"] for e in rest["data"]] == [4, 5, 6, 7] and not rest["has_more"]
    empty = get(client, acme[1], f"/api/v1/runs/{run.public_id}/events", after=7).json()
    assert empty == {"data": [], "has_more": False, "next_after": 7}


@pytest.mark.parametrize("params", [{"after": "x"}, {"after": -1}, {"limit": 0}, {"limit": 100000}])
def test_it_rejects_bad_event_cursors(client, acme, params):
    run = make_run(acme[0])
    response = get(client, acme[1], f"/api/v1/runs/{run.public_id}/events", **params)
    assert response.status_code == 400
    assert response.json()["error"]["param"] in ("after", "limit")


def test_a_collection_scoped_token_sees_only_its_collection(client, acme):
    org = acme[0]
    support = Collection.objects.create(org=org, name="support")
    inside = make_run(org, collection=support)
    outside = make_run(org)
    _, scoped = ApiToken.generate(org, collection=support)
    listed = [r["id"] for r in get(client, scoped, "/api/v1/runs").json()["results"]]
    assert listed == [inside.public_id]
    assert get(client, scoped, f"/api/v1/runs/{outside.public_id}").status_code == 404
    assert get(client, acme[1], "/api/v1/runs", collection="support").json()["results"][0]["collection"] == "support"


def test_unknown_api_urls_are_json_404s(client, acme):
    response = get(client, acme[1], "/api/v1/nothing-here")
    assert response.status_code == 404
    assert response.json()["error"]["message"]
