"""Per-org limits that keep one tenant from starving the others (settings ``JETTY_ORG_MAX_*``; 0 is no limit).

Each check raises ``ApiError`` in OpenAI's shape with a ``code`` that names the limit, so a client can tell which
one it met: ``org_queue_limit`` (429), ``org_ingest_limit`` (413), ``org_ingest_concurrency_limit`` (429),
``org_events_limit`` (413) and ``org_storage_limit`` (413).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager

from django.apps import apps
from django.conf import settings
from django.db.models import Sum

from .api_errors import ApiError


def stored_bytes(org_id: int) -> int:
    """The bytes an org keeps in files: its runs' artifacts (ingested ones too) and its uploads."""
    artifact = apps.get_model("trajectories", "Artifact")
    upload = apps.get_model("runs", "Upload")
    artifacts = artifact.objects.filter(run__org_id=org_id).aggregate(n=Sum("size"))["n"] or 0
    uploads = upload.objects.filter(org_id=org_id).aggregate(n=Sum("size"))["n"] or 0
    return int(artifacts) + int(uploads)


def storage_room(org_id: int) -> int | None:
    """How many more bytes the org may store, or None without a limit."""
    limit = settings.JETTY_ORG_MAX_STORED_BYTES
    return None if limit <= 0 else max(0, limit - stored_bytes(org_id))


def check_storage(org_id: int, adding: int, *, param: str | None = None) -> None:
    """ApiError 413 ``org_storage_limit`` when ``adding`` more bytes would take the org over its storage limit."""
    room = storage_room(org_id)
    if room is not None and adding > room:
        limit = settings.JETTY_ORG_MAX_STORED_BYTES
        raise ApiError(
            413,
            f"This org's storage limit is {limit} bytes (JETTY_ORG_MAX_STORED_BYTES); {limit - room} are in use "
            f"and this needs {adding} more. Delete runs or uploads, or ask the operator for more.",
            code="org_storage_limit",
            param=param,
        )


def check_ingest_size(size: int, *, param: str = "body") -> None:
    """ApiError 413 ``org_ingest_limit`` for an ingest or import body over the limit, before anything reads it."""
    limit = settings.JETTY_ORG_MAX_INGEST_BYTES
    if limit > 0 and size > limit:
        raise ApiError(
            413,
            f"The ingest is {size} bytes; this org may send at most {limit} bytes at a time "
            "(JETTY_ORG_MAX_INGEST_BYTES). Split the runs into several requests.",
            code="org_ingest_limit",
            param=param,
        )


def check_events(count: int, *, param: str = "events") -> None:
    """ApiError 413 ``org_events_limit`` for an ingested run with more events than a run may have."""
    limit = settings.JETTY_ORG_MAX_EVENTS_PER_RUN
    if limit > 0 and count > limit:
        raise ApiError(
            413,
            f"The run has {count} events; a run may have at most {limit} (JETTY_ORG_MAX_EVENTS_PER_RUN).",
            code="org_events_limit",
            param=param,
        )


_ingesting: dict[int, int] = {}
_ingesting_lock = threading.Lock()


@contextmanager
def ingest_slot(org_id: int) -> Iterator[None]:
    """Hold one of the org's ingest slots in this process, or ApiError 429 ``org_ingest_concurrency_limit``."""
    limit = settings.JETTY_ORG_MAX_CONCURRENT_INGESTS
    with _ingesting_lock:
        if limit > 0 and _ingesting.get(org_id, 0) >= limit:
            raise ApiError(
                429,
                f"This org already has {limit} ingest(s) or import(s) in progress "
                "(JETTY_ORG_MAX_CONCURRENT_INGESTS): send the next when one has finished.",
                code="org_ingest_concurrency_limit",
                param=None,
                headers={"Retry-After": "1"},
            )
        _ingesting[org_id] = _ingesting.get(org_id, 0) + 1
    try:
        yield
    finally:
        with _ingesting_lock:
            _ingesting[org_id] -= 1
            if not _ingesting[org_id]:
                del _ingesting[org_id]
