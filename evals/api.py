"""``/api/v1``: rubrics, judging a run, datasets, experiments with their statistics and gates, and agreement.
Org-scoped throughout (another org's object is a 404)."""

from __future__ import annotations

import json
from typing import Any

import pandas as pd
from django.db import transaction
from django.http import Http404
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework.decorators import api_view
from rest_framework.request import Request
from rest_framework.response import Response

from orgs.api_errors import ApiError, invalid, json_object
from orgs.auth import principal_of
from orgs.models import public_code
from runs.models import Task, TaskKind
from trajectories.api import get_run_for
from trajectories.models import Label, LabelSource

from .experiments import start_experiment
from .judges import JudgeError, judge_run
from .models import Dataset, DatasetItem, Experiment, HillClimb, Rubric
from .results import agreement_rows, experiment_results, gate_experiment, judge_rows


def _task(request: Request, ref: Any, param: str = "task") -> Task:
    if not isinstance(ref, str) or "/" not in ref:
        raise invalid(f"`{param}` must name a task as COLLECTION/TASK", param)
    collection, _, name = ref.partition("/")
    task = Task.objects.for_principal(principal_of(request)).filter(collection__name=collection, name=name).first()
    if task is None:
        raise ApiError(404, f"Task `{ref}` not found", code="not_found", param=param)
    return task


# Rubrics


def check_criteria(criteria: Any) -> list[dict[str, Any]]:
    if not isinstance(criteria, list) or not criteria or len(criteria) > 50:
        raise invalid("`criteria` must be a list of 1 to 50 criteria", "criteria")
    names = set()
    for i, c in enumerate(criteria):
        where = f"criteria[{i}]"
        if not isinstance(c, dict) or not isinstance(c.get("name"), str) or not c["name"].isidentifier():
            raise invalid(f"{where}: each criterion needs a `name` (letters, digits, `_`)", where)
        if c["name"] in names:
            raise invalid(f"{where}: criterion `{c['name']}` is named twice", where)
        names.add(c["name"])
        weight = c.get("weight", 1)
        if not isinstance(weight, int | float) or weight <= 0:
            raise invalid(f"{where}: `weight` must be a positive number", where)
        anchors = c.get("anchors", {})
        if not isinstance(anchors, dict) or not set(anchors) <= {"1", "2", "3", "4", "5"}:
            raise invalid(f'{where}: `anchors` maps scores "1".."5" to what they mean', where)
    return criteria


def rubric_json(rubric: Rubric) -> dict[str, Any]:
    return {
        "object": "rubric",
        "id": rubric.public_id,
        "name": rubric.name,
        "description": rubric.description,
        "criteria": rubric.criteria,
        "pass_threshold": rubric.pass_threshold,
        "floor": rubric.floor,
        "hard_floors": rubric.hard_floors,
        "tasks": [f"{t.collection.name}/{t.name}" for t in rubric.tasks.select_related("collection")],
    }


@extend_schema(methods=["GET"], responses=OpenApiTypes.OBJECT, operation_id="rubrics")
@extend_schema(
    methods=["POST"], request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT}, operation_id="rubrics"
)
@api_view(["GET", "POST"])
def rubrics(request: Request) -> Response:
    """List rubrics, or define one: `{"name", "criteria": [{name, description, weight, anchors}], "pass_threshold",
    "floor", "hard_floors": {criterion: min}, "tasks": ["collection/task"]}`."""
    principal = principal_of(request)
    if request.method == "GET":
        found = Rubric.objects.for_org(principal.org).order_by("name")
        return Response({"object": "list", "data": [rubric_json(r) for r in found]})
    body = json_object(request)
    name = body.get("name")
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise invalid("`name` is required", "name")
    criteria = check_criteria(body.get("criteria"))
    names = {c["name"] for c in criteria}
    threshold, floor = body.get("pass_threshold", 4.0), body.get("floor", 3)
    if not isinstance(threshold, int | float) or not 1 <= threshold <= 5:
        raise invalid("`pass_threshold` must be from 1 to 5", "pass_threshold")
    if type(floor) is not int or not 1 <= floor <= 5:
        raise invalid("`floor` must be an integer from 1 to 5", "floor")
    hard = body.get("hard_floors", {})
    if (
        not isinstance(hard, dict)
        or not set(hard) <= names
        or not all(type(v) is int and 1 <= v <= 5 for v in hard.values())
    ):
        raise invalid("`hard_floors` maps criteria of this rubric to a minimum score from 1 to 5", "hard_floors")
    tasks = [_task(request, ref, "tasks") for ref in body.get("tasks", [])]
    if Rubric.objects.filter(org=principal.org, name=name).exists():
        raise ApiError(409, f"Rubric `{name}` already exists", code="conflict", param="name")
    rubric = Rubric.objects.create(
        public_id=public_code("rub"),
        org=principal.org,
        name=name,
        description=str(body.get("description", "")),
        criteria=criteria,
        pass_threshold=float(threshold),
        floor=floor,
        hard_floors=hard,
    )
    rubric.tasks.set(tasks)
    return Response(rubric_json(rubric), status=201)


def get_rubric_for(request: Request, ref: str) -> Rubric:
    rubrics = Rubric.objects.for_org(principal_of(request).org)
    rubric = rubrics.filter(public_id=ref).first() or rubrics.filter(name=ref).first()
    if rubric is None:
        raise Http404
    return rubric


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="rubric")
@api_view(["GET", "DELETE"])
def rubric_detail(request: Request, ref: str) -> Response:
    rubric = get_rubric_for(request, ref)
    if request.method == "DELETE":
        rubric.delete()
        return Response(status=204)
    return Response(rubric_json(rubric))


@extend_schema(request=OpenApiTypes.OBJECT, responses=OpenApiTypes.OBJECT, operation_id="runs_judge")
@api_view(["POST"])
def run_judge(request: Request, public_id: str) -> Response:
    """Score a run with a rubric judge: `{"rubric", "model", "allow_same_model"?}`. The verdict is stored as labels
    (`eval.grade`, `eval.pass`, `score.<criterion>`) and a `judge.verdict` event."""
    run = get_run_for(request, public_id)
    body = json_object(request)
    if not isinstance(body.get("rubric"), str):
        raise invalid("`rubric` (id or name) is required", "rubric")
    rubric = get_rubric_for(request, body["rubric"])
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise invalid("`model` (the judge) is required", "model")
    try:
        verdict = judge_run(run, rubric, model, allow_same_model=bool(body.get("allow_same_model")))
    except JudgeError as exc:
        raise invalid(str(exc), "model")
    return Response({"object": "judge.verdict", "run_id": run.public_id, "rubric": rubric.public_id, **verdict})


# Datasets


def dataset_json(dataset: Dataset, items: bool = False) -> dict[str, Any]:
    data: dict[str, Any] = {
        "object": "dataset",
        "id": dataset.public_id,
        "name": dataset.name,
        "description": dataset.description,
        "items": dataset.items.count(),
    }
    if items:
        data["items"] = [
            {"key": i.key, "inputs": i.inputs, "file_paths": i.file_paths, "expected": i.expected}
            for i in dataset.items.all()
        ]
    return data


@extend_schema(methods=["GET"], responses=OpenApiTypes.OBJECT, operation_id="datasets")
@extend_schema(
    methods=["POST"], request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT}, operation_id="datasets"
)
@api_view(["GET", "POST"])
def datasets(request: Request) -> Response:
    """List datasets, or create one: `{"name", "items": [{"key", "inputs", "file_paths", "expected"}]}`."""
    principal = principal_of(request)
    if request.method == "GET":
        found = Dataset.objects.filter(org=principal.org).order_by("name")
        return Response({"object": "list", "data": [dataset_json(d) for d in found]})
    body = json_object(request)
    name, items = body.get("name"), body.get("items")
    if not isinstance(name, str) or not 0 < len(name) <= 100:
        raise invalid("`name` is required", "name")
    if not isinstance(items, list) or not 0 < len(items) <= 1000:
        raise invalid("`items` must be a list of 1 to 1000 items", "items")
    keys = set()
    rows = []
    for i, item in enumerate(items):
        where = f"items[{i}]"
        if not isinstance(item, dict) or not isinstance(item.get("key", str(i)), str):
            raise invalid(f"{where}: an item is an object with a string `key`", where)
        key = item.get("key", str(i))
        if key in keys:
            raise invalid(f"{where}: key `{key}` is used twice", where)
        keys.add(key)
        if not isinstance(item.get("inputs", {}), dict) or not isinstance(item.get("file_paths", []), list):
            raise invalid(f"{where}: `inputs` is an object and `file_paths` a list", where)
        rows.append(
            DatasetItem(
                key=key,
                inputs=item.get("inputs", {}),
                file_paths=item.get("file_paths", []),
                expected=item.get("expected"),
            )
        )
    if Dataset.objects.filter(org=principal.org, name=name).exists():
        raise ApiError(409, f"Dataset `{name}` already exists", code="conflict", param="name")
    dataset = Dataset.objects.create(
        public_id=public_code("ds"), org=principal.org, name=name, description=str(body.get("description", ""))
    )
    for row in rows:
        row.dataset = dataset
    DatasetItem.objects.bulk_create(rows)
    return Response(dataset_json(dataset, items=True), status=201)


def get_dataset_for(request: Request, ref: str) -> Dataset:
    found = Dataset.objects.filter(org=principal_of(request).org)
    dataset = found.filter(public_id=ref).first() or found.filter(name=ref).first()
    if dataset is None:
        raise Http404
    return dataset


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="dataset")
@api_view(["GET", "DELETE"])
def dataset_detail(request: Request, ref: str) -> Response:
    dataset = get_dataset_for(request, ref)
    if request.method == "DELETE":
        if dataset.experiments.exists():
            raise ApiError(409, "Experiments use this dataset", code="conflict")
        dataset.delete()
        return Response(status=204)
    return Response(dataset_json(dataset, items=True))


# Experiments


def experiment_json(experiment: Experiment) -> dict[str, Any]:
    trials = experiment.trials
    return {
        "object": "experiment",
        "id": experiment.public_id,
        "name": experiment.name,
        "task": f"{experiment.task.collection.name}/{experiment.task.name}",
        "dataset": experiment.dataset.public_id,
        "models": experiment.model_names,
        "repeats": experiment.repeats,
        "rubric": experiment.rubric.public_id if experiment.rubric else None,
        "judge_model": experiment.judge_model or None,
        "status": experiment.status,
        "trials": trials.count(),
        "scored": trials.filter(scored=True).count(),
        "created": experiment.created.isoformat(),
        "finished": experiment.finished.isoformat() if experiment.finished else None,
    }


@extend_schema(methods=["GET"], responses=OpenApiTypes.OBJECT, operation_id="experiments")
@extend_schema(
    methods=["POST"], request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT}, operation_id="experiments"
)
@api_view(["GET", "POST"])
def experiments(request: Request) -> Response:
    """List experiments, or start one: `{"task": "collection/task", "dataset", "models": [...], "repeats",
    "rubric"?, "judge_model"?, "name"?}`; its runs fan out on Celery and are scored as they end."""
    principal = principal_of(request)
    if request.method == "GET":
        found = Experiment.objects.filter(org=principal.org).select_related("task__collection", "dataset", "rubric")
        return Response({"object": "list", "data": [experiment_json(e) for e in found.order_by("-created")[:200]]})
    body = json_object(request)
    task = _task(request, body.get("task"))
    if not isinstance(body.get("dataset"), str):
        raise invalid("`dataset` (id or name) is required", "dataset")
    dataset = get_dataset_for(request, body["dataset"])
    models = body.get("models")
    if not isinstance(models, list) or not models or not all(isinstance(m, str) and m for m in models):
        raise invalid("`models` must be a non-empty list of model names", "models")
    repeats = body.get("repeats", 1)
    if type(repeats) is not int or not 1 <= repeats <= 50:
        raise invalid("`repeats` must be an integer from 1 to 50", "repeats")
    rubric = get_rubric_for(request, body["rubric"]) if body.get("rubric") else None
    judge_model = body.get("judge_model") or ""
    if rubric is not None and not judge_model:
        raise invalid("A rubric needs a `judge_model`", "judge_model")
    if judge_model in models and not body.get("allow_same_model"):
        raise invalid("The judge may not be a model under test (set `allow_same_model` to allow it)", "judge_model")
    try:
        experiment = start_experiment(
            principal,
            task,
            dataset,
            list(dict.fromkeys(models)),
            repeats,
            rubric=rubric,
            judge_model=judge_model,
            name=str(body.get("name", ""))[:200],
        )
    except ValueError as exc:
        raise invalid(str(exc))
    return Response(experiment_json(experiment), status=201)


def get_experiment_for(request: Request, public_id: str) -> Experiment:
    found = (
        Experiment.objects.filter(org=principal_of(request).org, public_id=public_id)
        .select_related("task__collection", "dataset", "rubric")
        .first()
    )
    if found is None:
        raise Http404
    return found


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="experiment")
@api_view(["GET"])
def experiment_detail(request: Request, public_id: str) -> Response:
    """The experiment and, as far as it has been scored, its statistics per model and the paired comparison."""
    experiment = get_experiment_for(request, public_id)
    return Response({**experiment_json(experiment), "results": experiment_results(experiment)})


@extend_schema(
    parameters=[
        OpenApiParameter("rule", str, description='JSON: {"metric", "min"} or {"metric", "not_worse_than", ...}'),
        OpenApiParameter("model", str, description="The candidate model (default: the first)"),
    ],
    responses=OpenApiTypes.OBJECT,
    operation_id="experiment_gate",
)
@api_view(["GET"])
def experiment_gate(request: Request, public_id: str) -> Response:
    """Apply a gate rule to a finished experiment: `{passed, reason, report}` (the report is markdown for a PR)."""
    experiment = get_experiment_for(request, public_id)
    try:
        rule = json.loads(request.query_params.get("rule") or "")
    except ValueError:
        raise invalid("`rule` must be JSON", "rule")
    if not isinstance(rule, dict):
        raise invalid("`rule` must be a JSON object", "rule")
    try:
        return Response(gate_experiment(experiment, rule, request.query_params.get("model")))
    except ValueError as exc:
        raise invalid(str(exc), "rule")


LABEL_COLUMNS = ("run__public_id", "key", "author", "value", "source")


@extend_schema(
    parameters=[
        OpenApiParameter("task", str, description="Only runs of this task (COLLECTION/TASK)"),
        OpenApiParameter("rubric", str, description="Only this rubric's criteria"),
    ],
    responses=OpenApiTypes.OBJECT,
    operation_id="evals_agreement",
)
@api_view(["GET"])
def agreement(request: Request) -> Response:
    """How far reviewers agree on each criterion (`score.<criterion>` labels by several humans: Cohen's kappa for
    two, Krippendorff's alpha always), and how far the judges agree with the humans' consensus."""
    org = principal_of(request).org
    labels = Label.objects.filter(run__org=org, key__startswith="score.", event__isnull=True)
    if request.query_params.get("task"):
        task = _task(request, request.query_params["task"])
        labels = labels.filter(run__collection=task.collection, run__task=task.name)
    if request.query_params.get("rubric"):
        rubric = get_rubric_for(request, request.query_params["rubric"])
        labels = labels.filter(key__in=[f"score.{c['name']}" for c in rubric.criteria])
    rows = [
        {"item": run_id, "criterion": key.removeprefix("score."), "reviewer": author, "value": value, "source": source}
        for run_id, key, author, value, source in labels.values_list(
            "run__public_id", "key", "author", "value", "source"
        )[:100_000]
        if isinstance(value, int | float) and not isinstance(value, bool)
    ]
    frame = pd.DataFrame(rows, columns=["item", "criterion", "reviewer", "value", "source"])
    humans = frame[frame["source"] == LabelSource.HUMAN]
    judges = frame[frame["source"] == LabelSource.JUDGE]
    return Response(
        {
            "object": "evals.agreement",
            "items": int(frame["item"].nunique()),
            "reviewers": agreement_rows(humans),
            "judge_vs_human": judge_rows(humans, judges),
        }
    )


def hill_climb_json(climb: HillClimb) -> dict[str, Any]:
    return {
        "object": "hill_climb",
        "id": climb.public_id,
        "task": f"{climb.task.collection.name}/{climb.task.name}",
        "rubric": climb.rubric.public_id,
        "judge_model": climb.judge_model,
        "reviser_model": climb.reviser_model,
        "max_rounds": climb.max_rounds,
        "patience": climb.patience,
        "status": climb.status,
        "best_version": climb.best_version,
        "best_grade": climb.best_grade,
        "rounds": climb.rounds,
    }


@extend_schema(request=OpenApiTypes.OBJECT, responses={201: OpenApiTypes.OBJECT}, operation_id="hill_climbs")
@api_view(["POST"])
def hill_climbs(request: Request) -> Response:
    """Start hill-climbing a runbook task: `{"task", "rubric", "judge_model", "reviser_model", "model"?,
    "init_params"?, "max_rounds" (1-10), "patience" (1-10)}`."""
    from .tasks import advance_hill_climb

    principal = principal_of(request)
    body = json_object(request)
    task = _task(request, body.get("task"))
    if task.kind != TaskKind.RUNBOOK or not task.latest_version:
        raise invalid("Hill-climbing improves a runbook task that has a version", "task")
    if not isinstance(body.get("rubric"), str):
        raise invalid("`rubric` (id or name) is required", "rubric")
    rubric = get_rubric_for(request, body["rubric"])
    fields = {}
    for key in ("judge_model", "reviser_model"):
        if not isinstance(body.get(key), str) or not body[key]:
            raise invalid(f"`{key}` is required", key)
        fields[key] = body[key]
    model = body.get("model") or ""
    if fields["judge_model"] == model and not body.get("allow_same_model"):
        raise invalid("The judge may not be the model under test (set `allow_same_model` to allow it)", "judge_model")
    for key, default in (("max_rounds", 5), ("patience", 2)):
        value = body.get(key, default)
        if type(value) is not int or not 1 <= value <= 10:
            raise invalid(f"`{key}` must be an integer from 1 to 10", key)
        fields[key] = value
    if not isinstance(body.get("init_params", {}), dict):
        raise invalid("`init_params` must be an object", "init_params")
    climb = HillClimb.objects.create(
        public_id=public_code("hc"),
        org=principal.org,
        task=task,
        rubric=rubric,
        model=model,
        init_params=body.get("init_params", {}),
        candidate_version=task.latest_version,
        token_prefix=principal.prefix,
        **fields,
    )
    transaction.on_commit(lambda: advance_hill_climb.delay(climb.pk))
    return Response(hill_climb_json(climb), status=201)


@extend_schema(responses=OpenApiTypes.OBJECT, operation_id="hill_climb")
@api_view(["GET"])
def hill_climb_detail(request: Request, public_id: str) -> Response:
    climb = (
        HillClimb.objects.filter(org=principal_of(request).org, public_id=public_id)
        .select_related("task__collection", "rubric")
        .first()
    )
    if climb is None:
        raise Http404
    return Response(hill_climb_json(climb))
