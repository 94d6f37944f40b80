"""LLM judges over whole runs: the trajectory compacted into a transcript the judge reads, a rubric judge that
scores each criterion 1-5, and verdicts stored as labels (``eval.grade``, ``eval.pass``, ``score.<criterion>``)."""

from __future__ import annotations

import json
import time
from typing import Any

from runs.llm import ModelError, complete
from trajectories.actions import EventRecord, append_events, record_label
from trajectories.models import Event, LabelSource, Run
from trajectories.schemas import read_model_call, upgrade

from .models import Rubric

PROMPT_VERSION = "rubric-judge/1"
MAX_TRANSCRIPT_CHARS = 60_000
MAX_FIELD_CHARS = 1_500


class JudgeError(Exception):
    """The run cannot be judged as asked (the model under test as judge, an answer that does not fit)."""


def _cut(value: Any, limit: int = MAX_FIELD_CHARS) -> str:
    text = value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
    return text if len(text) <= limit else text[:limit] + f" […{len(text) - limit} more chars]"


def _model_call(payload: dict[str, Any]) -> str:
    """What the model answered, whatever wire the call went in."""
    call = read_model_call(payload)
    answer = call.answer()
    parts = []
    if answer.text:
        parts.append(f"said: {_cut(answer.text)}")
    for asked in answer.tool_calls:
        parts.append(f"asked for tool {asked.name}: {_cut(asked.arguments, 400)}")
    return "; ".join(parts) or f"answered ({call.finish_reason or 'no content'})"


def compact_line(event: Event) -> str | None:
    """One event as a line of the transcript a judge reads (None for events that say nothing about the work)."""
    p = upgrade(event.kind, event.payload)
    match event.kind:
        case "model.call":
            return f"[model {event.model}] {_model_call(p)}"
        case "agent.message":
            return f"[agent] {_cut(p.get('content'))}"
        case "tool.call":
            return f"[tool call {p.get('name')}] {_cut(p.get('arguments'), 600)}"
        case "tool.result":
            return f"[tool result] {_cut(p.get('output'), 600)}"
        case "command":
            return f"[command exit {p.get('exit_code')}] {_cut(p.get('command'), 600)}\n{_cut(p.get('output'), 800)}"
        case "file.change":
            return f"[file {p.get('action')}] {p.get('path')} ({p.get('size', '?')} bytes)"
        case "step.end":
            return f"[step {p.get('step')} {p.get('status')}] {_cut(p.get('outputs') or p.get('error'), 600)}"
        case "error":
            return f"[error] {_cut(p)}"
        case "run.state" if p.get("status") in ("failed", "timed_out", "cancelled", "succeeded"):
            return f"[run {p['status']}] {_cut(p.get('error', ''))}"
    return None


def compact_trajectory(run: Run, limit: int = MAX_TRANSCRIPT_CHARS) -> str:
    """The whole run as a transcript: model calls, tool calls, commands, file changes, then the outputs. When it
    is too long the middle is left out (the start and the end say the most), and the cut is said."""
    lines = [line for e in run.events.order_by("seq").iterator() if (line := compact_line(e))]
    outputs = []
    job = getattr(run, "job", None)
    if job is not None and job.final_answer:
        outputs.append(f"[final answer] {_cut(job.final_answer, 4000)}")
    if job is not None and job.validation is not None:
        outputs.append(f"[validation report] {_cut(job.validation, 3000)}")
    for artifact in run.artifacts.filter(size__lte=20_000).order_by("path")[:20]:
        if artifact.content_type.startswith(("text/", "application/json")):
            with artifact.file.open("rb") as handle:
                outputs.append(f"[result file {artifact.path}]\n{_cut(handle.read().decode(errors='replace'), 3000)}")
    budget = limit - sum(len(o) for o in outputs)
    body = "\n".join(lines)
    if len(body) > budget > 0:
        head, tail = body[: budget // 2], body[-budget // 2 :]
        body = f"{head}\n[… {len(body) - budget} characters of the middle left out …]\n{tail}"
    header = f"Run {run.public_id}: task {run.task}, agent {run.agent or '-'}, status {run.status}."
    return "\n".join([header, body, *outputs])


RUBRIC_PROMPT = """You are a strict reviewer. Score the agent's work below on each criterion from 1 to 5, using the
anchors. Judge what the agent actually did (its commands, tool calls, files and outputs), not what it claims.

Task: {task}

Criteria:
{criteria}

The run, compacted:
<trajectory>
{trajectory}
</trajectory>

Answer in JSON: for each criterion its integer `score` and a short `explanation`, and an overall `summary`."""


def rubric_schema(rubric: Rubric) -> dict[str, Any]:
    score = {
        "type": "object",
        "properties": {"score": {"type": "integer", "minimum": 1, "maximum": 5}, "explanation": {"type": "string"}},
        "required": ["score", "explanation"],
        "additionalProperties": False,
    }
    names = [c["name"] for c in rubric.criteria]
    scores = {"type": "object", "properties": dict.fromkeys(names, score), "required": names}
    return {
        "type": "object",
        "properties": {"scores": scores, "summary": {"type": "string"}},
        "required": ["scores", "summary"],
    }


def describe(rubric: Rubric) -> str:
    blocks = []
    for c in rubric.criteria:
        anchors = "\n".join(f"    {k}: {v}" for k, v in sorted((c.get("anchors") or {}).items()))
        blocks.append(f"- {c['name']} (weight {c.get('weight', 1)}): {c.get('description', '')}\n{anchors}")
    return "\n".join(blocks)


def judge_run(run: Run, rubric: Rubric, judge_model: str, *, allow_same_model: bool = False) -> dict[str, Any]:
    """Score a run with a rubric judge; store the verdict as labels and a ``judge.verdict`` event. Returns
    {grade, passed, scores, reasons, explanation}."""
    if judge_model == run.model and not allow_same_model:
        raise JudgeError(f"the judge would be the model under test ({judge_model}); pass allow_same_model to allow it")
    prompt = RUBRIC_PROMPT.format(task=run.task, criteria=describe(rubric), trajectory=compact_trajectory(run))
    schema = rubric_schema(rubric)
    try:
        answer = complete(
            run.org,
            judge_model,
            [{"role": "user", "content": prompt}],
            response_format={"type": "json_schema", "json_schema": {"name": "rubric_verdict", "schema": schema}},
            temperature=0,
        )
    except ModelError as exc:
        raise JudgeError(str(exc)) from None
    verdict = answer.json
    try:
        scores = {c["name"]: int(verdict["scores"][c["name"]]["score"]) for c in rubric.criteria}
        notes = {c["name"]: str(verdict["scores"][c["name"]].get("explanation", "")) for c in rubric.criteria}
    except (TypeError, KeyError, ValueError):
        raise JudgeError(f"the judge's answer does not fit the rubric: {answer.text[:300]}") from None
    if not all(1 <= s <= 5 for s in scores.values()):
        raise JudgeError(f"the judge scored outside 1-5: {scores}")
    grade, passed, reasons = rubric.verdict(scores)
    common: dict[str, Any] = {
        "source": LabelSource.JUDGE,
        "author": f"judge:{judge_model}",
        "rubric": rubric.public_id,
        "judge_model": judge_model,
        "prompt_version": PROMPT_VERSION,
        "raw_output": answer.text,
    }
    summary = str(verdict.get("summary", ""))
    record_label(run, "eval.grade", grade, explanation=summary, **common)
    record_label(run, "eval.pass", passed, explanation="; ".join(reasons) or "every rule met", **common)
    for name, score in scores.items():
        record_label(run, f"score.{name}", score, criterion=name, explanation=notes[name], **common)
    payload = {
        "judge_model": judge_model,
        "rubric": rubric.public_id,
        "prompt_version": PROMPT_VERSION,
        "scores": scores,
        "grade": grade,
        "passed": passed,
        "reasons": reasons,
        "usage": {"prompt_tokens": answer.prompt_tokens, "completion_tokens": answer.completion_tokens},
        "cost_usd": answer.cost_usd,
    }
    # A verdict, not a call of the run's own: it does not count in the run's tokens or cost.
    append_events(run.pk, [EventRecord(kind="judge.verdict", ts=time.time(), payload=payload, span="judge")])
    return {"grade": grade, "passed": passed, "scores": scores, "reasons": reasons, "explanation": summary}
