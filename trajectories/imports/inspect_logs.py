"""Inspect AI eval logs, read with Inspect's own ``read_eval_log``: one agent run per sample and epoch."""

from __future__ import annotations

import io
import tempfile
import zipfile
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from django.conf import settings

from ..models import EventKind, LabelSource, RunKind, RunStatus
from ..schemas import finish_reason, model_call
from .common import BadImport, ImportedRun, LabelRecord, Report, Stream, loose_timestamp, new_record, summed, text_of


def _dump(value: Any) -> Any:
    """A pydantic model (or anything) as plain JSON data."""
    dump = getattr(value, "model_dump", None)
    if callable(dump):
        return dump(mode="json", exclude_none=True)
    if isinstance(value, list):
        return [_dump(v) for v in value]
    if isinstance(value, dict):
        return {k: _dump(v) for k, v in value.items()}
    return value


INSPECT_COMMON = {"uuid", "span_id", "timestamp", "working_start", "event", "pending"}


def _rest(event: Any, mapped: set[str]) -> dict[str, Any]:
    """What an Inspect event holds beyond the fields mapped into the Jetty event: kept with it."""
    return {k: v for k, v in _dump(event).items() if k not in mapped | INSPECT_COMMON}


def _moment(value: Any, default: float) -> float:
    if isinstance(value, datetime):
        return value.timestamp()
    return loose_timestamp(value, default)


def read_inspect_log(data: bytes, filename: str) -> Any:
    """An eval log read by Inspect itself (``.eval`` zip or ``.json``), its attachments resolved."""
    from inspect_ai.log import read_eval_log

    suffix = ".json" if filename.endswith(".json") or data[:1] == b"{" else ".eval"
    if suffix == ".eval":  # a zip: what it unpacks to counts against the upload limit (zip bombs)
        try:
            unpacked = sum(info.file_size for info in zipfile.ZipFile(io.BytesIO(data)).infolist())
        except zipfile.BadZipFile:
            raise BadImport("Not an Inspect AI eval log: neither JSON nor an .eval archive", param="file") from None
        if unpacked > settings.JETTY_MAX_UPLOAD_BYTES:
            limit = settings.JETTY_MAX_UPLOAD_BYTES
            raise BadImport(f"The eval log unpacks to more than {limit} bytes", param="file", status=413)
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / f"log{suffix}"
        path.write_bytes(data)
        try:
            return read_eval_log(str(path), resolve_attachments=True)
        except Exception as exc:  # Inspect raises many kinds for a file that is not one of its logs
            raise BadImport(f"Not an Inspect AI eval log: {type(exc).__name__}: {exc}", param="file") from None


def parse_inspect(log: Any, *, task: str = "") -> tuple[list[ImportedRun], Report]:
    """One run per sample (and epoch) of an Inspect AI eval log.

    ``span_begin``/``span_end`` become ``step.start``/``step.end`` (the span of the events inside is the innermost
    span's name), ``sample_init`` the user's input as an ``agent.message``, ``model`` a ``model.call`` (input
    messages, tools, config; output; tokens; time), ``tool`` a ``tool.call`` then its ``tool.result``,
    ``sandbox`` exec a ``command``, ``score`` a ``judge.verdict``, ``error`` an ``error``, ``info``/``logger`` a
    ``log``; what else a model, tool or score event holds stays in its payload under ``inspect``. The final
    conversation (``sample.messages``) is not stored again: the model calls hold it. Each sample score is a label
    ``score.<scorer>``: a judge's (``judge:<model>``) when the scorer called a model, the platform's otherwise.
    Other events (state and store changes, approvals, inputs…) are kept as ``log`` events and reported.
    """
    report = Report("inspect")
    spec = log.eval
    if not log.samples:
        raise BadImport("The eval log holds no samples (was it written with samples?)", param="file")
    runs = []
    eval_meta = {
        "format": "inspect",
        "eval_id": spec.eval_id,
        "run_id": spec.run_id,
        "task": spec.task,
        "task_version": spec.task_version,
        "model": spec.model,
        "status": log.status,
        "created": spec.created,
        "results": _dump(log.results) if log.results is not None else None,
    }
    model_provider = spec.model.split("/", 1)[0] if "/" in spec.model else ""
    for sample in log.samples:
        where = f"samples[{sample.id}#{sample.epoch}]"
        stream = Stream(report)
        default_ts = _moment(spec.created, datetime.now(tz=UTC).timestamp())
        spans: dict[str, str] = {}  # inspect span id -> its name
        scorer_models: dict[str, str] = {}  # scorer span name -> the model it called
        for i, event in enumerate(sample.events):
            ewhere = f"{where}.events[{i}]"
            ts = _moment(getattr(event, "timestamp", None), default_ts)
            name = event.event
            span = spans.get(getattr(event, "span_id", "") or "", "")
            if name == "span_begin":
                spans[event.id] = event.name
                payload = {"step": event.name, "name": event.name, "type": event.type, "inspect_span_id": event.id}
                stream.add(
                    EventKind.STEP_START,
                    ts,
                    payload | {"parent": spans.get(event.parent_id or "", "")},
                    span=event.name,
                )
            elif name == "span_end":
                ended = {"step": spans.get(event.id, ""), "inspect_span_id": event.id}
                stream.add(EventKind.STEP_END, ts, ended, span=spans.get(event.id, ""))
            elif name == "sample_init":
                given = _dump(event.sample.input)
                for message in given if isinstance(given, list) else [{"role": "user", "content": given}]:
                    said = {"role": message.get("role", "user"), "content": text_of(message.get("content"))}
                    stream.add(EventKind.AGENT_MESSAGE, ts, said, span=span)
            elif name == "model":
                output = event.output
                usage = output.usage if output is not None else None
                completed = _moment(getattr(event, "completed", None), ts)
                call_model = str(event.model)
                request = {
                    "model": call_model,
                    "messages": _dump(event.input),
                    "tools": _dump(event.tools),
                    "tool_choice": _dump(event.tool_choice),
                    "config": _dump(event.config),
                }
                stop = output.choices[0].stop_reason if output is not None and output.choices else None
                payload = model_call(
                    "inspect", request, _dump(output), usage=_dump(usage), finish_reason=finish_reason(stop)
                )
                if getattr(event, "error", None):
                    payload["error"] = event.error
                payload["inspect"] = _rest(
                    event, {"model", "input", "tools", "tool_choice", "config", "output", "error"}
                )
                stream.add(
                    EventKind.MODEL_CALL,
                    ts,
                    payload,
                    span=span,
                    model=call_model,
                    provider=call_model.split("/", 1)[0] if "/" in call_model else model_provider,
                    prompt_tokens=usage.input_tokens if usage is not None else None,
                    completion_tokens=usage.output_tokens if usage is not None else None,
                    cost_usd=getattr(usage, "total_cost", None),
                    latency_ms=max(0, int((completed - ts) * 1000)) if completed >= ts else None,
                )
                scorer_models.setdefault(span, call_model)
            elif name == "tool":
                call = {"id": event.id, "name": event.function, "arguments": _dump(event.arguments)}
                call["inspect"] = _rest(event, {"id", "function", "arguments", "result", "error", "completed"})
                stream.add(EventKind.TOOL_CALL, ts, call, span=span)
                ok = event.error is None
                output = _dump(event.result) if ok else _dump(event.error)
                result = {"id": event.id, "name": event.function, "output": output, "ok": ok}
                stream.add(EventKind.TOOL_RESULT, _moment(getattr(event, "completed", None), ts), result, span=span)
            elif name == "sandbox" and getattr(event, "action", "") == "exec":
                command = event.cmd or ""
                stream.add(
                    EventKind.COMMAND,
                    ts,
                    {"command": command, "output": event.output, "exit_code": event.result, "ok": event.result == 0},
                    span=span,
                )
            elif name == "score":
                verdict = {"scorer": span, **(_dump(event.score) or {}), "target": _dump(event.target)}
                verdict["inspect"] = _rest(event, {"score", "target"})
                stream.add(EventKind.JUDGE_VERDICT, ts, verdict, span=span)
            elif name == "error":
                stream.add(
                    EventKind.ERROR, ts, {"message": event.error.message, "traceback": event.error.traceback}, span=span
                )
            elif name in ("info", "logger"):
                message = _dump(event.data) if name == "info" else _dump(event.message)
                stream.add(EventKind.LOG, ts, {"message": message, "source": f"inspect {name}"}, span=span)
            else:
                stream.keep(ewhere, f"{name} event", ts, _dump(event), "inspect", span)
        labels = []
        for scorer, score in (sample.scores or {}).items():
            judge = scorer_models.get(scorer, "")
            raw = ""
            if judge:
                grading = (score.metadata or {}).get("grading") if isinstance(score.metadata, dict) else None
                raw = text_of((grading or [{}])[-1].get("content")) if grading else ""
            labels.append(
                LabelRecord(
                    key=f"score.{scorer}",
                    value=_dump(score.value),
                    source=LabelSource.JUDGE if judge else LabelSource.SYSTEM,
                    author=f"judge:{judge}" if judge else "system",
                    criterion=scorer,
                    judge_model=judge,
                    raw_output=raw or (score.explanation or "" if judge else ""),
                    explanation=score.explanation or "",
                )
            )
        status = RunStatus.FAILED if sample.error else RunStatus.SUCCEEDED
        if sample.limit is not None and getattr(sample.limit, "type", "") in ("time", "working"):
            status = RunStatus.TIMED_OUT
        record = new_record(
            task or spec.task,
            RunKind.AGENT,
            status,
            default_ts,
            model=spec.model[:200],
            provider=model_provider[:50],
            agent="inspect",
            error=sample.error.message[:10_000] if sample.error else "",
            error_kind="user" if status == RunStatus.TIMED_OUT else ("platform" if sample.error else ""),
            started_at=_moment(sample.started_at, default_ts) if getattr(sample, "started_at", None) else None,
            finished_at=_moment(sample.completed_at, default_ts) if getattr(sample, "completed_at", None) else None,
            events=stream.events,
        )
        summed(record)
        record.metadata = {
            "import": {
                **eval_meta,
                "sample_id": sample.id,
                "sample_uuid": getattr(sample, "uuid", None),
                "epoch": sample.epoch,
                "target": _dump(sample.target),
                "limit": _dump(sample.limit),
                "sample_metadata": _dump(sample.metadata),
                "output": _dump(sample.output),
                "model_usage": _dump(sample.model_usage),
                "total_time": sample.total_time,
                "working_time": sample.working_time,
                "store": _dump(sample.store),
            }
        }
        runs.append(ImportedRun(f"inspect:{spec.eval_id}:{sample.id}:{sample.epoch}", record, labels))
    return runs, report
