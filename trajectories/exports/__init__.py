"""A run written out whole: JSONL, Jetty's trajectory JSON, Harbor ATIF, OpenTelemetry GenAI spans over OTLP/HTTP.

JSONL (``run_to_jsonl``), one JSON object per line, each tagged by ``type``:

- first ``{"type": "run", "format": "jetty.jsonl", "version": 1, ...header}``: the run header (``HEADER_FIELDS``);
- then ``{"type": "event", "seq", "kind", "span", "ts", "payload", "model", "provider", "prompt_tokens",
  "completion_tokens", "cost_usd", "latency_ms"}`` for every event, in ``seq`` order;
- then ``{"type": "artifact", "path", "size", "sha256", "content_type", "url"}`` for every artifact;
- then ``{"type": "label", "key", "value", "source", "author", "event_seq", "criterion", "rubric", "judge_model",
  "prompt_version", "raw_output", "explanation", "created", "updated", "history": [{"previous", "value",
  "changed_by", "created"}]}`` for every label (``event_seq`` is null for a label on the run itself).

Trajectory JSON (``run_to_trajectory_json``): ``{"format": "jetty.trajectory", "version": 1, "run": header,
"steps": {span name: {"index", "first_seq", "last_seq", "started_at", "finished_at", "status", "visits",
"event_seqs", "counts"}}, "events": [...], "artifacts": [...], "labels": [...]}`` with events, artifacts and labels
shaped as in the JSONL lines (without ``type``). Steps are keyed by span name (a workflow step, an agent turn), in
the order they first appear; ``POST /api/v1/runs/ingest`` reads this document back.

ATIF (``atif.run_to_atif``): user and system messages as their steps, a step per model call with its metrics,
messages, reasoning, tool calls and results; the events ATIF has no place for are counted in
``extra.jetty.not_in_atif``.

Spans (``otel.run_to_otel_spans``) follow the OpenTelemetry GenAI semantic conventions: one root span per run
(``invoke_agent {agent}`` for agent runs, ``invoke_workflow {task}`` for workflows, ``chat {model}`` for a
passthrough call), a child span per workflow step, ``chat {model}`` per model call and ``execute_tool {name}`` per
tool call (from the call to its result), every other event as a span event; times are the events' own.
"""

from .atif import run_to_atif
from .jetty import ExportTooLarge, dumps, run_to_jsonl, run_to_trajectory_json
from .otel import OtlpExport, OtlpExportFailed, export_run_otlp, nanoseconds, run_to_otel_spans, trace_id_of

__all__ = [
    "ExportTooLarge",
    "OtlpExport",
    "OtlpExportFailed",
    "dumps",
    "export_run_otlp",
    "nanoseconds",
    "run_to_atif",
    "run_to_jsonl",
    "run_to_otel_spans",
    "run_to_trajectory_json",
    "trace_id_of",
]
