"""/healthz answers for what the web process depends on: 200 when the database (and Redis, when configured)
answer, 503 naming the one that does not."""

from __future__ import annotations

from django.test import Client


def test_it_is_healthy_when_the_database_answers(db, settings):
    settings.REDIS_URL = ""
    response = Client().get("/healthz")
    assert response.status_code == 200 and response.json() == {"ok": True, "checks": {"database": "ok"}}


def test_it_is_a_503_naming_redis_when_redis_does_not_answer(db, settings):
    settings.REDIS_URL = "redis://127.0.0.1:1/0"  # nothing listens on port 1
    response = Client().get("/healthz")
    assert response.status_code == 503
    assert response.json()["ok"] is False and response.json()["checks"]["redis"].startswith("error: ")
    assert response.json()["checks"]["database"] == "ok"
