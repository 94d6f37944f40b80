"""The OpenAPI schema and its docs page."""

from __future__ import annotations

import yaml


def test_the_schema_describes_the_gateway_and_the_runs_api(client, db):
    response = client.get("/api/schema", HTTP_ACCEPT="application/vnd.oai.openapi+json")
    assert response.status_code == 200
    schema = response.json() if response["Content-Type"].endswith("json") else yaml.safe_load(response.content)
    paths = schema["paths"]
    for path in (
        "/v1/chat/completions",
        "/v1/models",
        "/api/v1/runs",
        "/api/v1/runs/{public_id}",
        "/api/v1/runs/{public_id}/events",
    ):
        assert path in paths
    assert "OpenAIError" in schema["components"]["schemas"]


def test_the_docs_page_is_served_with_local_assets(client, db):
    response = client.get("/api/docs")
    assert response.status_code == 200
    html = response.content.decode()
    assert "swagger-ui" in html and "cdn." not in html
