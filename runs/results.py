"""The ``jetty`` object: what a finished (or running) agent run says about itself."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from trajectories.models import Run


def run_summary(run: Run) -> dict[str, Any]:
    job = getattr(run, "job", None)
    base = f"{settings.PUBLIC_URL}/api/v1/runs/{run.public_id}"
    files = [
        {"path": a.path, "url": f"{base}/artifacts/{a.path}", "size": a.size, "sha256": a.sha256}
        for a in run.artifacts.all()
    ]
    primary = [f["path"] for f in files if f["path"] not in ("summary.md", "validation_report.json")]
    return {
        "run_id": run.public_id,
        "status": run.status,
        "collection": run.collection.name if run.collection is not None else None,
        "task": run.task,
        "task_version": run.metadata.get("task_version"),
        "agent": run.agent,
        "agent_version": run.metadata.get("agent_version"),
        "model": run.model,
        "snapshot": run.snapshot,
        "results_files": files,
        "primary_files": primary,
        "validation": job.validation if job else None,
        "contract": run.contract,
        "usage": {
            "prompt_tokens": run.prompt_tokens,
            "completion_tokens": run.completion_tokens,
            "total_tokens": run.total_tokens,
        },
        "cost_usd": float(run.cost_usd),
        "duration_s": run.duration_s,
        "error": run.error or None,
        "error_code": run.error_code or None,
        "warnings": run.metadata.get("warnings") or [],
        "kind": run.kind,
        "outputs": run.metadata.get("outputs"),
        "parent_run_id": run.parent.public_id if run.parent_id and run.parent else None,
        "trajectory_url": f"{base}/events",
    }


def final_answer(run: Run) -> str:
    job = getattr(run, "job", None)
    return (job.final_answer if job else "") or run.error or ""
