"""Credentials where they must never be: every text and JSON column of the platform's tables, the exports of its
runs (JSONL, trajectory JSON, ATIF, OpenTelemetry spans with content) and its webhook bodies.

``conftest.py`` runs ``scan_database`` after every test that used the database, before its rows are flushed, so the
scan covers everything each test wrote; ``tests/test_zz_secrets_scan.py`` (last in the session) asserts that no
scan found anything and that the scans did cover the session.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field

from django.apps import apps
from django.db import models

CREDENTIALS = re.compile(r"\b(?:jty|jrt)_[A-Za-z0-9_-]{40,}")  # org API tokens and sandbox run tokens
# The provider key the tests configure, and the collection and caller secrets of the stored-run tests.
KNOWN = (
    "sk-upstream-secret-0123456789",
    "col-secret-7c1d93e0aa",
    "call-secret-55be02f1c4",
    "unused-secret-123",
)
APPS = ("orgs", "trajectories", "runs", "evals")
EXPORTED_RUNS = 25  # per test, newest first: exports are the slow part


@dataclass
class Tally:
    scans: int = 0
    rows: int = 0
    exports: int = 0
    webhook_bodies: int = 0
    found: list[str] = field(default_factory=list)


TALLY = Tally()


def credentials_in(text: str) -> list[str]:
    hits = [m.group(0)[:12] + "…" for m in CREDENTIALS.finditer(text)]
    return hits + [secret[:8] + "…" for secret in KNOWN if secret in text]


def _text_columns(model: type[models.Model]) -> list[str]:
    kinds = (models.CharField, models.TextField, models.JSONField)
    return [f.attname for f in model._meta.concrete_fields if isinstance(f, kinds)]


def scan_database(test: str) -> None:
    from runs.webhooks import payload
    from trajectories.exports import dumps, run_to_atif, run_to_jsonl, run_to_otel_spans, run_to_trajectory_json
    from trajectories.models import Run

    TALLY.scans += 1

    def check(where: str, text: str) -> None:
        TALLY.found += [f"{test}: {where}: {hit}" for hit in credentials_in(text)]

    for config in APPS:
        for model in apps.get_app_config(config).get_models():
            columns = _text_columns(model)
            if not columns:
                continue
            for row in model.objects.values_list("pk", *columns).iterator(chunk_size=2000):
                TALLY.rows += 1
                check(f"{model._meta.label} #{row[0]}", json.dumps(row[1:], default=str))
    for run in Run.objects.order_by("-pk")[:EXPORTED_RUNS]:
        TALLY.exports += 1
        check(f"{run.public_id} JSONL export", "\n".join(run_to_jsonl(run)))
        check(f"{run.public_id} trajectory export", dumps(run_to_trajectory_json(run)))
        check(f"{run.public_id} ATIF export", dumps(run_to_atif(run)))
        spans = run_to_otel_spans(run, include_content=True)
        check(f"{run.public_id} OpenTelemetry spans", "\n".join(span.to_json() for span in spans))
    for run in Run.objects.exclude(job__webhook_url="").filter(job__isnull=False).order_by("-pk")[:EXPORTED_RUNS]:
        TALLY.webhook_bodies += 1
        check(f"{run.public_id} webhook body", payload(run).decode())
