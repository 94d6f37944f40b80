"""Steps that start runs: an agent run of a runbook, a fan-out over a list of child runs, and the fan-in that
reads what child runs produced. Child runs are created with an idempotency key unique to the step's pass, so a
step re-run after a crash finds its children instead of starting them twice."""

from __future__ import annotations

from typing import Any

from trajectories.models import FINAL_STATUSES, Run, RunStatus

from ..paths import PathError, resolve
from ..registry import ANY, BOOLEAN, INTEGER, STRING, STRINGS, Json, Step, StepContext, StepFailed, Wait, obj, register

MAX_INLINE_TEXT = 64 * 1024
TEXT_TYPES = ("text/", "application/json", "application/xml", "application/x-yaml")
RUN_RECORD = obj(
    {
        "run_id": STRING,
        "status": STRING,
        "final_answer": STRING,
        "validation": ANY,
        "outputs": ANY,
        "files": {"type": "array"},
        "error": STRING,
        "cost_usd": {"type": "number"},
        "total_tokens": INTEGER,
    },
    ("run_id", "status"),
    extra=True,
)


def run_record(run: Run) -> Json:
    """What later steps can read of a finished run: its answer, validation, outputs and small text files."""
    from ...results import final_answer

    files = []
    for artifact in run.artifacts.all().order_by("path"):
        entry: Json = {
            "path": artifact.path,
            "size": artifact.size,
            "sha256": artifact.sha256,
            "url": f"/api/v1/runs/{run.public_id}/artifacts/{artifact.path}",
        }
        if artifact.size <= MAX_INLINE_TEXT and artifact.content_type.startswith(TEXT_TYPES):
            with artifact.file.open("rb") as handle:
                entry["text"] = handle.read().decode("utf-8", errors="replace")
        files.append(entry)
    job = getattr(run, "job", None)
    return {
        "run_id": run.public_id,
        "status": run.status,
        "final_answer": final_answer(run),
        "validation": job.validation if job else None,
        "outputs": run.metadata.get("outputs"),
        "files": files,
        "error": run.error,
        "cost_usd": float(run.cost_usd),
        "total_tokens": run.total_tokens,
    }


def children(ctx: StepContext, ids: list[str]) -> list[Run]:
    runs = {r.public_id: r for r in Run.objects.filter(org_id=ctx.run.org_id, public_id__in=ids).select_related("job")}
    return [runs[i] for i in ids if i in runs]


@register
class RunbookStep(Step):
    type = "runbook"
    category = "agents"
    description = (
        "Run a coding agent in a sandbox on a runbook (inline `runbook`, or a stored runbook `task` of the "
        "collection) and wait for it; outputs the run's answer, validation report and result files."
    )
    params = obj(
        {
            "runbook": STRING,
            "task": STRING,
            "instruction": STRING,
            "model": STRING,
            "agent": STRING,
            "snapshot": STRING,
            "template_variables": {"type": "object"},
            "file_paths": STRINGS,
            "timeout_s": {"type": "integer", "minimum": 1, "maximum": 86400},
            "network": {"enum": ["on", "off"]},
            "allow_failure": BOOLEAN,
        }
    )
    outputs = RUN_RECORD
    raw_params = ("runbook",)  # its {{placeholders}} are its own, filled from template_variables

    def run(self, ctx: StepContext, params: Json) -> Json | Wait:
        from ...stored import start_child_runbook

        if "run_id" not in ctx.state:
            run = start_child_runbook(ctx.run, params, key=f"wf:{ctx.key}", secrets=ctx.secrets, env=ctx.env)
            ctx.state["run_id"] = run.public_id
            ctx.record("log", {"message": f"started agent run {run.public_id}", "child_run": run.public_id})
        (child,) = children(ctx, [ctx.state["run_id"]])
        if child.status not in FINAL_STATUSES:
            return Wait(ctx.state)
        record = run_record(child)
        if child.status != RunStatus.SUCCEEDED and not params.get("allow_failure"):
            raise StepFailed(f"agent run {child.public_id} ended {child.status}: {child.error}")
        return record


@register
class ListEmitAwait(Step):
    type = "list_emit_await"
    category = "control"
    description = (
        "Fan out: start one child run of a stored `task` per item of `items` (the item goes in as init_params"
        "[`item_param`]), in parallel, and wait for all of them. Outputs every child's run record, in order."
    )
    params = obj(
        {
            "items": {"type": "array"},
            "task": STRING,
            "item_param": STRING,
            "init_params": {"type": "object"},
            "max_items": {"type": "integer", "minimum": 1, "maximum": 1000},
            "allow_failures": BOOLEAN,
        },
        ("items", "task"),
    )
    outputs = obj(
        {"runs": {"type": "array", "items": RUN_RECORD}, "count": INTEGER, "succeeded": INTEGER, "failed": INTEGER},
        ("runs", "count", "succeeded", "failed"),
    )

    def run(self, ctx: StepContext, params: Json) -> Json | Wait:
        from ...stored import start_child_task

        items: list[Any] = params["items"]
        cap = params.get("max_items", 100)
        if len(items) > cap:
            raise StepFailed(f"items: {len(items)} items is more than max_items ({cap})")
        started: list[str] = ctx.state.setdefault("run_ids", [])
        for index in range(len(started), len(items)):
            init = {**params.get("init_params", {}), params.get("item_param", "item"): items[index]}
            child = start_child_task(ctx.run, params["task"], init, key=f"wf:{ctx.key}:{index}", secrets=ctx.secrets)
            started.append(child.public_id)
        runs = children(ctx, started)
        if any(r.status not in FINAL_STATUSES for r in runs):
            return Wait(ctx.state)
        records = [run_record(r) for r in runs]
        failed = sum(1 for r in runs if r.status != RunStatus.SUCCEEDED)
        if failed and not params.get("allow_failures"):
            first = next(r for r in runs if r.status != RunStatus.SUCCEEDED)
            raise StepFailed(
                f"{failed} of {len(runs)} child runs did not succeed (first: {first.public_id}, {first.error})"
            )
        return {"runs": records, "count": len(records), "succeeded": len(records) - failed, "failed": failed}


@register
class ExtractFromTrajectories(Step):
    type = "extract_from_trajectories"
    category = "control"
    description = (
        "Fan in: read one value from each of several runs (run ids, or run records from a fan-out), by a "
        "path into the run record (`final_answer`, `validation.overall_passed`, `outputs.text`, `files[0].text`)."
    )
    params = obj({"runs": {"type": "array"}, "field": STRING, "skip_missing": BOOLEAN}, ("runs", "field"))
    outputs = obj({"items": {"type": "array"}, "count": INTEGER}, ("items", "count"))

    def run(self, ctx: StepContext, params: Json) -> Json:
        ids = [r["run_id"] if isinstance(r, dict) else r for r in params["runs"]]
        if not all(isinstance(i, str) for i in ids):
            raise StepFailed("runs: give run ids or run records")
        found = children(ctx, ids)
        if len(found) != len(ids):
            missing = sorted(set(ids) - {r.public_id for r in found})
            raise StepFailed(f"runs: unknown run(s) {', '.join(missing[:5])}")
        items = []
        for run in found:
            try:
                items.append(resolve(f"run.{params['field']}", {"run": run_record(run)}))
            except PathError as exc:
                if not params.get("skip_missing"):
                    raise StepFailed(f"field: run {run.public_id}: {exc}") from None
        return {"items": items, "count": len(items)}
