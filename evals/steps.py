"""The rubric judge as a workflow step, registered into the runs' step registry (execution never imports evals)."""

from __future__ import annotations

from runs.workflows.registry import BOOLEAN, STRING, Json, Step, StepContext, StepFailed, obj, register
from trajectories.models import Run

from .judges import JudgeError, judge_run
from .models import Rubric


@register
class RubricJudge(Step):
    type = "rubric_judge"
    category = "judges"
    description = (
        "Score a run (an earlier step's `run_id`) against a rubric with an LLM judge that reads the whole compacted "
        "trajectory; the verdict is stored as labels on that run. The judge may not be the run's own model unless "
        "`allow_same_model`."
    )
    params = obj(
        {"run_id": STRING, "rubric": STRING, "model": STRING, "allow_same_model": BOOLEAN},
        ("run_id", "rubric", "model"),
    )
    outputs = obj(
        {
            "grade": {"type": "number"},
            "passed": BOOLEAN,
            "scores": {"type": "object"},
            "reasons": {"type": "array"},
            "explanation": STRING,
        },
        ("grade", "passed", "scores"),
    )

    def run(self, ctx: StepContext, params: Json) -> Json:
        run = Run.objects.filter(org_id=ctx.run.org_id, public_id=params["run_id"]).select_related("org").first()
        rubric = Rubric.objects.filter(org_id=ctx.run.org_id).filter(public_id=params["rubric"]).first() or (
            Rubric.objects.filter(org_id=ctx.run.org_id, name=params["rubric"]).first()
        )
        if run is None:
            raise StepFailed(f"run_id: no run {params['run_id']!r}")
        if rubric is None:
            raise StepFailed(f"rubric: no rubric {params['rubric']!r}")
        try:
            return judge_run(run, rubric, params["model"], allow_same_model=params.get("allow_same_model", False))
        except JudgeError as exc:
            raise StepFailed(str(exc)) from None
