"""Jetty's own formats: JSONL (one object per line) and trajectory JSON (what ``POST /runs/ingest`` reads)."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from rest_framework.utils.encoders import JSONEncoder

from ..models import Artifact, Event, Run
from ..serializers import EventSerializer, RunSerializer

FORMAT, JSONL_FORMAT, VERSION = "jetty.trajectory", "jetty.jsonl", 1
HEADER_FIELDS = (*RunSerializer.Meta.fields, "snapshot", "parent")
EVENT_CHUNK = 1000


def dumps(value: Any) -> str:
    return json.dumps(value, cls=JSONEncoder, ensure_ascii=False, separators=(",", ":"))


def run_header(run: Run) -> dict[str, Any]:
    header = dict(RunSerializer(run).data)
    header.pop("events_url", None)
    header["snapshot"] = run.snapshot
    header["parent"] = run.parent.public_id if run.parent_id and run.parent else None
    return header


def events_of(run: Run) -> Iterator[Event]:
    """The run's events in order, read in chunks (a run may hold tens of thousands)."""
    return run.events.order_by("seq").iterator(chunk_size=EVENT_CHUNK)


def event_dict(event: Event) -> dict[str, Any]:
    return dict(EventSerializer(event).data)


def artifact_dict(run: Run, artifact: Artifact) -> dict[str, Any]:
    return {
        "path": artifact.path,
        "size": artifact.size,
        "sha256": artifact.sha256,
        "content_type": artifact.content_type,
        "url": f"{settings.PUBLIC_URL}/api/v1/runs/{run.public_id}/artifacts/{artifact.path}",
    }


def label_dicts(run: Run) -> list[dict[str, Any]]:
    labels = list(run.labels.select_related("event").prefetch_related("history").order_by("key", "author", "id"))
    return [
        {
            "key": label.key,
            "value": label.value,
            "source": label.source,
            "author": label.author,
            "event_seq": label.event.seq if label.event is not None else None,
            "criterion": label.criterion,
            "rubric": label.rubric,
            "judge_model": label.judge_model,
            "prompt_version": label.prompt_version,
            "raw_output": label.raw_output,
            "explanation": label.explanation,
            "created": label.created.isoformat(),
            "updated": label.updated.isoformat(),
            "history": [
                {"previous": c.previous, "value": c.value, "changed_by": c.changed_by, "created": c.created.isoformat()}
                for c in label.history.all()
            ],
        }
        for label in labels
    ]


def run_to_jsonl(run: Run) -> Iterator[str]:
    """The run as JSONL lines (each ending in a newline): the header, each event, each artifact, each label."""
    yield dumps({"type": "run", "format": JSONL_FORMAT, "version": VERSION, **run_header(run)}) + "\n"
    for event in events_of(run):
        yield dumps({"type": "event", **event_dict(event)}) + "\n"
    for artifact in run.artifacts.all():
        yield dumps({"type": "artifact", **artifact_dict(run, artifact)}) + "\n"
    for label in label_dicts(run):
        yield dumps({"type": "label", **label}) + "\n"


class ExportTooLarge(Exception):
    pass


def run_to_trajectory_json(run: Run, *, inline_artifacts: bool = False, limit: int | None = None) -> dict[str, Any]:
    """Jetty's trajectory JSON: the header, steps keyed by span name, events, artifacts and labels.

    With ``inline_artifacts`` each artifact also carries its content (``content_base64``), at most ``limit``
    bytes in all (``ExportTooLarge`` beyond), so that ingesting the document elsewhere brings the files too.
    """
    artifacts = [artifact_dict(run, a) for a in run.artifacts.all()]
    if inline_artifacts:
        total = sum(a["size"] for a in artifacts)
        if limit is not None and total > limit:
            raise ExportTooLarge(f"the run's artifacts hold {total} bytes, more than {limit} can be inlined")
        for artifact, row in zip(artifacts, run.artifacts.all(), strict=True):
            with row.file.open("rb") as f:
                artifact["content_base64"] = base64.b64encode(f.read()).decode()
    events = [event_dict(e) for e in events_of(run)]
    return {
        "format": FORMAT,
        "version": VERSION,
        "run": run_header(run),
        "steps": steps_of(events),
        "events": events,
        "artifacts": artifacts,
        "labels": label_dicts(run),
    }


def steps_of(events: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """Events grouped by span (workflow step, agent turn): where each starts and ends, its status and contents."""
    steps: dict[str, dict[str, Any]] = {}
    for event in events:
        name = event["span"]
        if not name:
            continue
        step = steps.setdefault(
            name,
            {
                "index": len(steps),
                "first_seq": event["seq"],
                "last_seq": event["seq"],
                "started_at": event["ts"],
                "finished_at": event["ts"],
                "status": None,
                "visits": 0,
                "event_seqs": [],
                "counts": {},
            },
        )
        step["last_seq"], step["finished_at"] = event["seq"], event["ts"]
        step["event_seqs"].append(event["seq"])
        step["counts"][event["kind"]] = step["counts"].get(event["kind"], 0) + 1
        if event["kind"] == "step.start":
            step["visits"] += 1
        elif event["kind"] == "step.end":
            step["status"] = (event["payload"] or {}).get("status")
    return steps
