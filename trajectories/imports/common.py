"""What every importer shares: the records it returns, its report, time and text helpers, strict field checks."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal, InvalidOperation
from typing import Any

from .. import schemas
from ..actions import EventRecord, RunRecord
from ..models import EventKind

FORMATS = ("atif", "inspect", "claude-code", "codex")
SHELL_TOOLS = frozenset({"Bash", "run_shell_command", "exec_command", "shell", "local_shell", "bash"})


class BadImport(ValueError):
    """Input that cannot be read at all: the request fails (400, or 413 for too much) and nothing is written."""

    def __init__(self, message: str, param: str | None = None, status: int = 400):
        super().__init__(message)
        self.message, self.param, self.status = message, param, status


@dataclass
class Report:
    """What an import could not map, where it was, and where it was kept instead."""

    format: str
    unmapped: list[dict[str, str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    def add(self, where: str, what: str, kept: str) -> None:
        self.unmapped.append({"where": where, "what": what, "kept": kept})

    def note(self, text: str) -> None:
        if text not in self.notes:
            self.notes.append(text)

    def as_dict(self) -> dict[str, Any]:
        return {"format": self.format, "unmapped": self.unmapped, "notes": self.notes}


@dataclass
class LabelRecord:
    key: str
    value: Any
    source: str
    author: str
    event_seq: int | None = None
    criterion: str = ""
    rubric: str = ""
    judge_model: str = ""
    prompt_version: str = ""
    raw_output: str = ""
    explanation: str = ""
    history: list[dict[str, Any]] | None = None  # as exported; None: one change, from nothing to the value
    created: float | None = None
    updated: float | None = None


@dataclass
class ArtifactRecord:
    path: str
    content: bytes
    content_type: str = ""


@dataclass
class ImportedRun:
    """A run read from elsewhere. ``source_id`` names it in its own format: importing it again finds it."""

    source_id: str
    record: RunRecord
    labels: list[LabelRecord] = field(default_factory=list)
    collection: str | None = None  # the collection the document names, if any
    artifacts: list[ArtifactRecord] = field(default_factory=list)


def new_record(task: str, kind: str, status: str, created: float, **fields: Any) -> RunRecord:
    """A run record without an org or id yet (``record_imported_runs`` gives them)."""
    fields.setdefault("events", [])
    return RunRecord(public_id="", org_id=0, task=task, kind=kind, status=status, created=created, **fields)


def summed(record: RunRecord) -> RunRecord:
    """Totals from the run's model calls, times from its events where the format gave none."""
    calls = [e for e in record.events if e.kind == EventKind.MODEL_CALL]
    record.prompt_tokens = sum(e.prompt_tokens or 0 for e in calls)
    record.completion_tokens = sum(e.completion_tokens or 0 for e in calls)
    record.total_tokens = record.prompt_tokens + record.completion_tokens
    record.cost_usd = round(sum(e.cost_usd or 0.0 for e in calls), 8)
    if record.events:
        record.started_at = record.started_at if record.started_at is not None else record.events[0].ts
        record.finished_at = record.finished_at if record.finished_at is not None else record.events[-1].ts
        record.created = min(record.created, record.started_at)
    return record


def timestamp(value: Any, where: str = "ts") -> float:
    """Seconds since the epoch from an ISO 8601 string or a number (strict: ``BadImport`` otherwise)."""
    if isinstance(value, bool):
        raise BadImport(f"`{where}` must be an ISO 8601 time or seconds since the epoch", param=where)
    if isinstance(value, (int, float)):
        return float(value)
    if isinstance(value, datetime):
        return (value if value.tzinfo else value.replace(tzinfo=UTC)).timestamp()
    if isinstance(value, str) and value:
        try:
            moment = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadImport(f"`{where}` is not an ISO 8601 time: {value!r}", param=where) from None
        return (moment if moment.tzinfo else moment.replace(tzinfo=UTC)).timestamp()
    raise BadImport(f"`{where}` must be an ISO 8601 time or seconds since the epoch", param=where)


def loose_timestamp(value: Any, default: float) -> float:
    try:
        return timestamp(value)
    except BadImport:
        return default


def text_of(content: Any) -> str:
    """The text of a message content: a string, or a list of parts with ``text``."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "\n".join(
            str(p.get("text") or "") for p in content if isinstance(p, dict) and isinstance(p.get("text"), str)
        )
    return "" if content is None else str(content)


def json_lines(data: bytes, report: Report) -> list[tuple[int, dict[str, Any]]]:
    """The JSON objects of a JSONL file, with their line numbers; lines that are not objects are reported."""
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadImport(f"The file is not UTF-8 text: {exc}", param="file") from None
    out = []
    for number, line in enumerate(text.splitlines(), start=1):
        if not line.strip():
            continue
        try:
            value = json.loads(line)
        except ValueError:
            value = None
        if not isinstance(value, dict):
            report.add(f"line {number}", "not a JSON object", "dropped: it holds no event")
            continue
        out.append((number, value))
    if not out:
        raise BadImport("The file holds no JSON lines", param="file")
    return out


def json_document(data: bytes) -> dict[str, Any]:
    try:
        value = json.loads(data)
    except (ValueError, UnicodeDecodeError) as exc:
        raise BadImport(f"The document is not JSON: {exc}", param="file") from None
    if not isinstance(value, dict):
        raise BadImport("The document must be a JSON object", param="file")
    return value


class Stream:
    """Events being built, each remembering where in the source it came from."""

    def __init__(self, report: Report) -> None:
        self.events: list[EventRecord] = []
        self.report = report

    def add(
        self, kind: str, ts: float, payload: dict[str, Any], *, at: int | None = None, **fields: Any
    ) -> EventRecord:
        """Add an event, in today's shape (``schemas.upgrade``); one that does not fit its kind's schema (a value of
        the wrong type in the source) is kept as a ``log`` naming the problem, and reported."""
        position = len(self.events) if at is None else at
        payload = schemas.upgrade(kind, payload)
        found = schemas.problem(kind, payload)
        if found is not None:
            self.report.add(f"a {kind} event", found, f"log event {position + 1}")
            kind, payload = EventKind.LOG, schemas.as_log(kind, payload, found)
        event = EventRecord(kind=kind, ts=ts, payload=payload, **fields)
        self.events.insert(position, event)
        return event

    def keep(self, where: str, what: str, ts: float, raw: Any, source: str, span: str = "") -> None:
        """Something the format holds that Jetty has no kind for: a ``log`` event carrying it, and a report line."""
        self.add(EventKind.LOG, ts, {"message": f"{source} {what}", "source": source, "raw": raw}, span=span)
        self.report.add(where, what, f"log event {len(self.events)}")


def string_field(data: dict[str, Any], key: str, where: str, limit: int, default: str = "") -> str:
    value = data.get(key, default)
    if value is None:
        return default
    if not isinstance(value, str):
        raise BadImport(f"`{where}.{key}` must be a string", param=f"{where}.{key}")
    if len(value) > limit:
        raise BadImport(f"`{where}.{key}` is longer than {limit} characters", param=f"{where}.{key}")
    return value


def count_field(data: dict[str, Any], key: str, where: str, *, optional: bool = False) -> int | None:
    value = data.get(key)
    if value is None and optional:
        return None
    value = 0 if value is None else value
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadImport(f"`{where}.{key}` must be a whole number of at least 0", param=f"{where}.{key}")
    return value


def amount_field(data: dict[str, Any], key: str, where: str, *, optional: bool = False) -> float | None:
    value = data.get(key)
    if value is None and optional:
        return None
    value = 0 if value is None else value
    try:
        if isinstance(value, bool):
            raise InvalidOperation
        amount = Decimal(str(value))
    except InvalidOperation:
        raise BadImport(f"`{where}.{key}` must be a number", param=f"{where}.{key}") from None
    if amount < 0 or not amount.is_finite() or amount >= Decimal(10) ** 6:
        raise BadImport(f"`{where}.{key}` must be a number from 0 to 1,000,000", param=f"{where}.{key}")
    return float(amount)
