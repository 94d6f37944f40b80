"""Jetty's own trajectory JSON (``exports.run_to_trajectory_json``), read back strictly for ``POST /runs/ingest``."""

from __future__ import annotations

import base64
import binascii
import hashlib
from pathlib import PurePosixPath
from typing import Any

from .. import schemas
from ..actions import EventRecord
from ..models import FINAL_STATUSES, EventKind, LabelSource, RunKind
from .common import (
    ArtifactRecord,
    BadImport,
    ImportedRun,
    LabelRecord,
    Report,
    amount_field,
    count_field,
    new_record,
    string_field,
    timestamp,
)

HEADER_STRINGS = {
    "task": 200,
    "model": 200,
    "upstream_model": 200,
    "provider": 50,
    "agent": 50,
    "snapshot": 100,
    "error_kind": 10,
    "error": 10_000,
    "error_code": 40,
}
HEADER_DERIVED = {
    "id",
    "org",
    "collection",
    "duration_s",
    "token_prefix",
    "last_seq",
    "events_dropped",
    "events_url",
    "parent",
}
HEADER_KNOWN = {
    *HEADER_STRINGS,
    *HEADER_DERIVED,
    "kind",
    "status",
    "prompt_tokens",
    "completion_tokens",
    "total_tokens",
    "cost_usd",
    "created",
    "started_at",
    "finished_at",
    "metadata",
    "contract",
}
EVENT_STRINGS = {"span": 100, "model": 200, "provider": 50}
EVENT_KNOWN = {
    *EVENT_STRINGS,
    "seq",
    "kind",
    "ts",
    "payload",
    "prompt_tokens",
    "completion_tokens",
    "cost_usd",
    "latency_ms",
}
LABEL_STRINGS = {
    "criterion": 100,
    "rubric": 100,
    "judge_model": 200,
    "prompt_version": 50,
    "raw_output": 1_000_000,
    "explanation": 1_000_000,
}
LABEL_KNOWN = {*LABEL_STRINGS, "key", "value", "source", "author", "event_seq", "created", "updated", "history"}


def _unknown(data: dict[str, Any], known: set[str], where: str, report: Report) -> dict[str, Any]:
    extra = {k: v for k, v in data.items() if k not in known}
    for key in extra:
        report.add(f"{where}.{key}", "unknown field", "the run's metadata.ingest.unmapped")
    return extra


def parse_trajectory(doc: Any) -> tuple[ImportedRun, Report]:
    """Jetty's trajectory JSON, checked strictly: every malformed part is a ``BadImport``, an event payload that
    does not fit its kind's schema (``trajectories.schemas``) included."""
    report = Report("trajectory")
    if not isinstance(doc, dict):
        raise BadImport("The body must be a JSON object: a trajectory as `GET /runs/{id}/export` gives it")
    if doc.get("format", "jetty.trajectory") != "jetty.trajectory":
        raise BadImport(f"Unknown `format` {doc.get('format')!r}: expected 'jetty.trajectory'", param="format")
    if doc.get("version", 1) != 1:
        raise BadImport(f"Unknown trajectory `version` {doc.get('version')!r}: expected 1", param="version")
    header, events, labels = doc.get("run"), doc.get("events"), doc.get("labels", [])
    if not isinstance(header, dict):
        raise BadImport("`run` must be an object: the run header", param="run")
    if not isinstance(events, list):
        raise BadImport("`events` must be a list", param="events")
    if not isinstance(labels, list):
        raise BadImport("`labels` must be a list", param="labels")
    source_id = header.get("id")
    if not isinstance(source_id, str) or not source_id.strip() or len(source_id) > 200:
        raise BadImport("`run.id` must be a non-empty string (at most 200 characters)", param="run.id")
    kind = header.get("kind", RunKind.AGENT)
    if kind not in RunKind.values:
        raise BadImport(f"`run.kind` must be one of {', '.join(RunKind.values)}", param="run.kind")
    status = header.get("status")
    if status not in FINAL_STATUSES:
        raise BadImport(
            f"`run.status` must be a final status ({', '.join(sorted(FINAL_STATUSES))}): only finished runs are "
            "ingested",
            param="run.status",
        )
    metadata = header.get("metadata") or {}
    if not isinstance(metadata, dict):
        raise BadImport("`run.metadata` must be an object", param="run.metadata")
    strings = {key: string_field(header, key, "run", limit) for key, limit in HEADER_STRINGS.items()}
    if not strings["task"]:
        raise BadImport("`run.task` must be a non-empty string", param="run.task")
    if strings["error_kind"] not in ("", "user", "upstream", "platform"):
        raise BadImport("`run.error_kind` must be user, upstream or platform", param="run.error_kind")
    contract = header.get("contract")
    if contract is not None and not (
        isinstance(contract, dict)
        and isinstance(contract.get("passed"), bool)
        and isinstance(contract.get("checks"), list)
    ):
        raise BadImport("`run.contract` must be null or an object with `passed` and `checks`", param="run.contract")
    if contract is not None:  # kept as the run's record says, never shown as this platform's own check
        contract = {**contract, "imported": True}
    if "created" not in header:
        raise BadImport("`run.created` is required", param="run.created")
    created = timestamp(header["created"], "run.created")
    started = None if header.get("started_at") is None else timestamp(header["started_at"], "run.started_at")
    finished = None if header.get("finished_at") is None else timestamp(header["finished_at"], "run.finished_at")
    extra = _unknown(header, HEADER_KNOWN, "run", report)
    top_extra = _unknown(doc, {"format", "version", "run", "events", "labels", "steps", "artifacts"}, "", report)

    record = new_record(
        strings.pop("task"),
        kind,
        status,
        created,
        started_at=started,
        finished_at=finished,
        prompt_tokens=count_field(header, "prompt_tokens", "run") or 0,
        completion_tokens=count_field(header, "completion_tokens", "run") or 0,
        total_tokens=count_field(header, "total_tokens", "run") or 0,
        cost_usd=amount_field(header, "cost_usd", "run") or 0.0,
        contract=contract,
        **strings,
    )
    seqs: list[int] = []
    for i, event in enumerate(events):
        where = f"events[{i}]"
        if not isinstance(event, dict):
            raise BadImport(f"`{where}` must be an object", param=where)
        if event.get("kind") not in EventKind.values:
            raise BadImport(
                f"`{where}.kind` must be one of {', '.join(EventKind.values)}, got {event.get('kind')!r}",
                param=f"{where}.kind",
            )
        if "ts" not in event:
            raise BadImport(f"`{where}.ts` is required", param=f"{where}.ts")
        payload = event.get("payload", {})
        if not isinstance(payload, dict):
            raise BadImport(f"`{where}.payload` must be an object", param=f"{where}.payload")
        seq = event.get("seq", i + 1)
        if isinstance(seq, bool) or not isinstance(seq, int) or (seqs and seq <= seqs[-1]):
            raise BadImport(f"`{where}.seq` must be a whole number greater than the one before", param=f"{where}.seq")
        seqs.append(seq)
        unknown = {k: v for k, v in event.items() if k not in EVENT_KNOWN}
        if unknown:
            payload = {**payload, "unmapped": unknown}
            for key in unknown:
                report.add(f"{where}.{key}", "unknown field", f"payload.unmapped of event {i + 1}")
        payload = schemas.upgrade(event["kind"], payload)  # an export from an older version reads as today's
        found = schemas.problem(event["kind"], payload)
        if found is not None:
            message = f"`{where}.payload` does not fit a {event['kind']} event: {found}"
            raise BadImport(message, param=f"{where}.payload")
        record.events.append(
            EventRecord(
                kind=event["kind"],
                ts=timestamp(event["ts"], f"{where}.ts"),
                payload=payload,
                prompt_tokens=count_field(event, "prompt_tokens", where, optional=True),
                completion_tokens=count_field(event, "completion_tokens", where, optional=True),
                cost_usd=amount_field(event, "cost_usd", where, optional=True),
                latency_ms=count_field(event, "latency_ms", where, optional=True),
                **{key: string_field(event, key, where, limit) for key, limit in EVENT_STRINGS.items()},
            )
        )
    if seqs != list(range(1, len(seqs) + 1)):
        report.note("The events' sequence numbers had gaps: they were renumbered from 1 (the old ones are in order).")
    renumbered = {seq: n for n, seq in enumerate(seqs, start=1)}

    parsed_labels = []
    for i, label in enumerate(labels):
        where = f"labels[{i}]"
        if not isinstance(label, dict):
            raise BadImport(f"`{where}` must be an object", param=where)
        key, author = string_field(label, "key", where, 200), string_field(label, "author", where, 200)
        if not key or not author:
            raise BadImport(f"`{where}` needs a `key` and an `author`", param=where)
        if "value" not in label:
            raise BadImport(f"`{where}.value` is required", param=f"{where}.value")
        if label.get("source") not in LabelSource.values:
            raise BadImport(f"`{where}.source` must be one of {', '.join(LabelSource.values)}", param=f"{where}.source")
        event_seq = label.get("event_seq")
        if event_seq is not None and event_seq not in renumbered:
            raise BadImport(f"`{where}.event_seq` names no event of this run", param=f"{where}.event_seq")
        history = label.get("history")
        if history is not None and not (
            isinstance(history, list) and all(isinstance(h, dict) and "value" in h for h in history)
        ):
            raise BadImport(f"`{where}.history` must be a list of changes with a `value`", param=f"{where}.history")
        for extra_key in set(label) - LABEL_KNOWN:
            report.add(f"{where}.{extra_key}", "unknown field", "dropped: labels have no place for it")
        for n, change in enumerate(history or []):
            if change.get("created") is not None:
                change["created"] = timestamp(change["created"], f"{where}.history[{n}].created")
        parsed_labels.append(
            LabelRecord(
                created=None if label.get("created") is None else timestamp(label["created"], f"{where}.created"),
                updated=None if label.get("updated") is None else timestamp(label["updated"], f"{where}.updated"),
                key=key,
                value=label["value"],
                source=label["source"],
                author=author,
                event_seq=None if event_seq is None else renumbered[event_seq],
                history=history,
                **{name: string_field(label, name, where, limit) for name, limit in LABEL_STRINGS.items()},
            )
        )
    artifacts = doc.get("artifacts") or []
    if not isinstance(artifacts, list):
        raise BadImport("`artifacts` must be a list", param="artifacts")
    files, listed = artifact_files(artifacts), [a for a in artifacts if "content_base64" not in a]
    collection = header.get("collection")
    if collection is not None and not isinstance(collection, str):
        raise BadImport("`run.collection` must be a string or null", param="run.collection")
    imported_meta: dict[str, Any] = {"format": "trajectory", "source_id": source_id}
    if header.get("org"):
        imported_meta["source_org"] = header["org"]
    if header.get("parent"):
        imported_meta["source_parent"] = header["parent"]
        report.add("run.parent", "the parent (workflow) run", "metadata.ingest.source_parent (not linked)")
    if listed:
        imported_meta["artifacts"] = listed
        report.add(
            "artifacts", f"{len(listed)} artifact(s) without their content (export with ?artifacts=inline to carry it)",
            "metadata.ingest.artifacts (path, size, sha256, url)",
        )  # fmt: skip
    if extra or top_extra:
        imported_meta["unmapped"] = {**{f"run.{k}": v for k, v in extra.items()}, **top_extra}
    record.metadata = {**metadata, "ingest": imported_meta}  # the run's own metadata (an import's too) kept
    return ImportedRun(source_id, record, parsed_labels, collection=collection, artifacts=files), report


def artifact_files(artifacts: list[Any]) -> list[ArtifactRecord]:
    """The artifacts that carry their content, checked: a safe relative path, valid base64, its size and sha256."""
    files, seen = [], set()
    for i, artifact in enumerate(artifacts):
        where = f"artifacts[{i}]"
        if not isinstance(artifact, dict):
            raise BadImport(f"`{where}` must be an object", param=where)
        if "content_base64" not in artifact:
            continue
        path = string_field(artifact, "path", where, 500)
        parts = PurePosixPath(path).parts
        if not path or path.startswith("/") or "\\" in path or any(p in ("..", ".") for p in parts) or path in seen:
            raise BadImport(f"`{where}.path` must be a unique relative path inside the results", param=f"{where}.path")
        seen.add(path)
        try:
            content = base64.b64decode(string_field(artifact, "content_base64", where, 1 << 40), validate=True)
        except binascii.Error:
            raise BadImport(f"`{where}.content_base64` is not base64", param=f"{where}.content_base64") from None
        if artifact.get("size") is not None and artifact["size"] != len(content):
            raise BadImport(f"`{where}.size` does not match its content", param=f"{where}.size")
        if artifact.get("sha256") is not None and artifact["sha256"] != hashlib.sha256(content).hexdigest():
            raise BadImport(f"`{where}.sha256` does not match its content", param=f"{where}.sha256")
        files.append(ArtifactRecord(path, content, string_field(artifact, "content_type", where, 100)))
    return files
