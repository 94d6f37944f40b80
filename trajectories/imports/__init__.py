"""Runs produced elsewhere, read into Jetty's runs and events, with a report of what could not be mapped.

Formats (each parser returns ``ImportedRun``s and fills a ``Report``; ``actions.record_imported_runs`` writes them):

- ``trajectory``: Jetty's own trajectory JSON (``exports.run_to_trajectory_json``), for ``POST /runs/ingest``.
  Strict: anything malformed is a ``BadImport`` and nothing is written.
- ``atif``: Harbor's Agent Trajectory Interchange Format (``schema_version`` ``ATIF-v1.x``), one run per document.
- ``inspect``: an Inspect AI eval log (``.eval`` or ``.json``, read with ``inspect_ai.log.read_eval_log``), one run
  per sample.
- ``claude-code``: a Claude Code session log (``~/.claude/projects/<project>/<session>.jsonl``).
- ``codex``: a Codex session rollout (``~/.codex/sessions/YYYY/MM/DD/rollout-….jsonl``).

The agent CLIs' session logs are not the streams their adapters read while a run executes (``runs.agents.clis``):
Codex's rollout holds Responses API items rather than ``exec --json`` items, and Claude Code's session lines wrap
the same message blocks as ``stream-json`` but add the user's prompts, per-line times and context attachments. So
they are parsed here, in the storage layer that knows nothing of execution, into the same event shapes the
adapters produce (``tool.call`` ``{id, name, arguments}``, ``command`` ``{command, output, exit_code, ok}``,
``tool.result`` ``{id, name, output, ok}``, ``agent.message`` ``{content[, role, thinking]}``).

Nothing is dropped silently: what a format holds that Jetty has no place for is kept (a ``log`` event carrying it,
or the run's ``metadata.import``) and listed in the report with where it was and where it went.
"""

from __future__ import annotations

from .atif import parse_atif
from .common import FORMATS, BadImport, ImportedRun, LabelRecord, Report, json_document
from .inspect_logs import parse_inspect, read_inspect_log
from .sessions import parse_claude_code, parse_codex
from .trajectory import parse_trajectory

__all__ = [
    "FORMATS",
    "BadImport",
    "ImportedRun",
    "LabelRecord",
    "Report",
    "parse_atif",
    "parse_claude_code",
    "parse_codex",
    "parse_import",
    "parse_inspect",
    "parse_trajectory",
]


def parse_import(format: str, data: bytes, *, filename: str = "", task: str = "") -> tuple[list[ImportedRun], Report]:
    """Runs from a file in one of ``FORMATS``."""
    if format == "atif":
        return parse_atif(json_document(data), task=task)
    if format == "inspect":
        return parse_inspect(read_inspect_log(data, filename), task=task)
    if format == "claude-code":
        return parse_claude_code(data, task=task)
    if format == "codex":
        return parse_codex(data, task=task)
    raise BadImport(f"`format` must be one of {', '.join(FORMATS)}", param="format")
