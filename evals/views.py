"""The web UI's evals pages: labelling queues (make one, score its items with the keyboard, settle disagreements)
and the dashboards. Every read goes through the signed-in user's org (``orgs.web.membership_for``); every write
through ``evals.actions``."""

from __future__ import annotations

import functools
from typing import Any

import plotly
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404, HttpRequest, HttpResponse
from django.shortcuts import redirect, render
from django.views.decorators.cache import cache_control
from django.views.decorators.http import require_GET, require_POST

from orgs.web import membership_for, require_write
from runs.results import final_answer
from trajectories import present
from trajectories.models import EventKind, Run, RunStatus
from trajectories.views import _label_filter, timeline_rows

from . import dashboards as charts
from .actions import ReviewError, adjudicate, create_queue, submit_review
from .labelling import own_scores, queue_state
from .models import Experiment, LabelQueue, LabelQueueItem, Rubric

ITEM_EVENTS = 150  # events shown with a run item; the run page has them all
LATEST_DEFAULT = 50
LATEST_MAX = 500


def get_queue_for_user(request: HttpRequest, public_id: str) -> LabelQueue:
    """The one way the labelling views load a queue: in the user's current org, else 404."""
    queue = (
        LabelQueue.objects.for_org(membership_for(request).org)
        .select_related("rubric", "created_by")
        .filter(public_id=public_id)
        .first()
    )
    if queue is None:
        raise Http404("No such queue")
    return queue


def get_item(queue: LabelQueue, position: int) -> LabelQueueItem:
    item = queue.items.select_related("run__collection", "run__org", "event").filter(position=position).first()
    if item is None:
        raise Http404("No such item")
    item.queue = queue  # already loaded, with its rubric
    return item


# The queues


def _selected_runs(request: HttpRequest, data: Any) -> tuple[list[Run], str | None]:
    """The runs a new queue holds: the ids picked in the runs table, else the latest N matching the filters."""
    runs = Run.objects.for_org(membership_for(request).org)
    ids = [i.strip() for raw in data.getlist("runs") for i in raw.split(",") if i.strip()]
    if ids:
        found = {r.public_id: r for r in runs.filter(public_id__in=ids)}
        unknown = [i for i in ids if i not in found]
        if unknown:
            return [], f"No such run: {', '.join(unknown[:5])}"
        return [found[i] for i in dict.fromkeys(ids)], None
    for name in ("task", "model", "status"):
        if value := data.get(name, "").strip():
            runs = runs.filter(**{name: value})
    if spec := data.get("label", "").strip():
        runs = runs.filter(_label_filter(spec)).distinct()
    latest = data.get("latest", "").strip() or str(LATEST_DEFAULT)
    if not latest.isdecimal() or not 1 <= int(latest) <= LATEST_MAX:
        return [], f"Latest is a number of runs from 1 to {LATEST_MAX}"
    return list(runs.order_by("-created")[: int(latest)]), None


def _queues_page(request: HttpRequest, form: Any, error: str | None = None, status: int = 200) -> HttpResponse:
    membership = membership_for(request)
    org = membership.org
    queues = list(LabelQueue.objects.for_org(org).select_related("rubric", "created_by")[:100])
    states = [queue_state(q) for q in queues]
    org_runs = Run.objects.for_org(org).order_by()
    picked = [i for raw in form.getlist("runs") for i in raw.split(",") if i.strip()]
    context = {
        "nav": "labelling",
        "states": states,
        "rubrics": Rubric.objects.for_org(org).order_by("name"),
        "form": form,
        "picked": picked,
        "error": error,
        "can_write": membership.role != "viewer",
        "tasks": org_runs.values_list("task", flat=True).distinct()[:200],
        "models": org_runs.exclude(model="").values_list("model", flat=True).distinct()[:200],
        "statuses": RunStatus.values,
        "event_kinds": EventKind.values,
        "latest_default": LATEST_DEFAULT,
    }
    return render(request, "evals/queues.html", context, status=status)


@login_required
@require_GET
def queues(request: HttpRequest) -> HttpResponse:
    return _queues_page(request, request.GET)


@login_required
def new_queue(request: HttpRequest) -> HttpResponse:
    """GET: the form, with the runs picked in the runs table. POST: make the queue."""
    if request.method != "POST":
        return _queues_page(request, request.GET)
    membership = membership_for(request)
    require_write(membership)
    data = request.POST
    rubric = Rubric.objects.for_org(membership.org).filter(public_id=data.get("rubric", "")).first()
    name = data.get("name", "").strip()
    reviewers = data.get("reviewers_per_item", "2").strip()
    kind = data.get("event_kind", "").strip()
    runs, error = _selected_runs(request, data)
    if not name or len(name) > 200:
        error = "Give the queue a name (up to 200 characters)"
    elif rubric is None:
        error = "Pick one of the organisation's rubrics"
    elif not reviewers.isdecimal():
        error = "Reviewers per item is a number from 1 to 10"
    elif kind and kind not in EventKind.values:
        error = f"There is no event kind {kind!r}"
    if error is None and rubric is not None:
        try:
            queue = create_queue(
                membership.org,
                name,
                rubric,
                runs,
                event_kind=kind,
                reviewers_per_item=int(reviewers),
                description=data.get("description", "")[:5000],
                created_by=request.user,
            )
        except ReviewError as exc:
            error = str(exc)
        else:
            messages.success(request, f"Queue {queue.name} made with {queue.items.count()} items")
            return redirect(f"/labelling/{queue.public_id}/")
    return _queues_page(request, data, error, status=400)


@login_required
def queue_page(request: HttpRequest, public_id: str) -> HttpResponse:
    queue = get_queue_for_user(request, public_id)
    state = queue_state(queue)
    me = request.user.get_username()
    reviewers = dict(state.reviewers)
    reviewers.setdefault(me, 0)
    total = len(state.items) or 1
    context = {
        "nav": "labelling",
        "queue": queue,
        "state": state,
        "reviewers": [(who, n, round(100 * n / total)) for who, n in sorted(reviewers.items())],
        "complete_pct": round(100 * state.complete / total),
        "me": me,
        "mine_left": sum(1 for i in state.items if me not in i.done_by and not i.complete),
        "can_write": membership_for(request).role != "viewer",
    }
    return render(request, "evals/queue.html", context)


@login_required
def queue_next(request: HttpRequest, public_id: str) -> HttpResponse:
    """To the next item the user has not scored (after ``after``), or back to the queue when there is none."""
    queue = get_queue_for_user(request, public_id)
    after = request.GET.get("after", "")
    item = queue_state(queue).next_for(request.user.get_username(), int(after) if after.isdecimal() else 0)
    if item is None:
        messages.info(request, "Nothing left for you to label in this queue.")
        return redirect(f"/labelling/{queue.public_id}/")
    return redirect(f"/labelling/{queue.public_id}/items/{item.position}/")


def _scores_from(post: Any) -> dict[str, str]:
    return {key.removeprefix("score."): post.get(key, "") for key in post if key.startswith("score.")}


@login_required
def queue_item(request: HttpRequest, public_id: str, position: int) -> HttpResponse:
    """An item and the rubric's form. Each reviewer sees their own scores only, so nobody anchors on another's."""
    queue = get_queue_for_user(request, public_id)
    item = get_item(queue, position)
    membership = membership_for(request)
    me = request.user.get_username()
    scores, comment = own_scores(item, me)
    error = None
    if request.method == "POST":
        require_write(membership)
        raw, comment = _scores_from(request.POST), request.POST.get("comment", "")
        try:
            submit_review(item, request.user, raw, comment)
        except ReviewError as exc:
            error = str(exc)
            scores = {k: int(v) for k, v in raw.items() if v.isdecimal()}
        else:
            messages.success(request, f"Item {item.position} scored")
            return redirect(f"/labelling/{queue.public_id}/next?after={item.position}")
    count = queue.items.count()
    run = item.run
    context: dict[str, Any] = {
        "nav": "labelling",
        "queue": queue,
        "item": item,
        "run": run,
        "final": True,
        "count": count,
        "criteria": queue.rubric.criteria,
        "scores": scores,
        "comment": comment,
        "error": error,
        "can_write": membership.role != "viewer",
        "prev_position": item.position - 1 if item.position > 1 else None,
        "next_position": item.position + 1 if item.position < count else None,
        "done_by": queue_state(queue, [item]).items[0].done_by,
    }
    if item.event is not None:
        context["detail"] = present.detail(item.event)
    else:
        context["answer"] = final_answer(run)
        context["rows"] = timeline_rows(list(run.events.order_by("seq")[:ITEM_EVENTS]))
        context["more_events"] = run.last_seq > ITEM_EVENTS
    return render(request, "evals/item.html", context, status=400 if error else 200)


def _disagreements_page(
    request: HttpRequest, queue: LabelQueue, error: str = "", failed: int | None = None
) -> HttpResponse:
    state = queue_state(queue)
    criteria = [c["name"] for c in queue.rubric.criteria]
    rows = [
        {"state": s, "suggested": s.suggested(criteria), "reviewers": sorted(s.scores.items())}
        for s in state.disagreements
    ]
    context = {
        "nav": "labelling",
        "queue": queue,
        "rows": rows,
        "criteria": criteria,
        "can_write": membership_for(request).role != "viewer",
        "error": error,
        "failed": failed,
    }
    return render(request, "evals/disagreements.html", context, status=400 if error else 200)


@login_required
def disagreements(request: HttpRequest, public_id: str) -> HttpResponse:
    """Items whose reviewers are far apart on a criterion or on pass/fail: their scores side by side, and a form
    to settle each."""
    return _disagreements_page(request, get_queue_for_user(request, public_id))


@login_required
@require_POST
def adjudicate_item(request: HttpRequest, public_id: str, position: int) -> HttpResponse:
    queue = get_queue_for_user(request, public_id)
    require_write(membership_for(request))
    item = get_item(queue, position)
    try:
        adjudicate(item, request.user, _scores_from(request.POST), request.POST.get("comment", ""))
    except ReviewError as exc:
        return _disagreements_page(request, queue, f"Item {position}: {exc}", failed=position)
    messages.success(request, f"Item {position} settled")
    return redirect(f"/labelling/{queue.public_id}/disagreements/")


# Dashboards


@login_required
def dashboards(request: HttpRequest) -> HttpResponse:
    org = membership_for(request).org
    experiments = Experiment.objects.filter(org=org).select_related("task__collection").order_by("-created")[:200]
    experiment = None
    if ref := request.GET.get("experiment", "").strip():
        experiment = Experiment.objects.filter(org=org, public_id=ref).first()
        if experiment is None:
            raise Http404("No such experiment")
    task = request.GET.get("task", "").strip()
    frame = charts.runs_frame(org, task=task, experiment=experiment)
    context = {
        "nav": "dashboards",
        "experiments": experiments,
        "experiment": experiment,
        "task": task,
        "tasks": Run.objects.for_org(org).order_by().values_list("task", flat=True).distinct()[:200],
        "n_runs": len(frame),
        "figures": charts.figures(frame) if len(frame) else {},
        "summary": charts.summary_rows(frame) if len(frame) else [],
        "plotly_version": plotly.__version__,
    }
    return render(request, "evals/dashboards.html", context)


@functools.cache
def _plotly_js() -> bytes:
    from plotly.offline import get_plotlyjs

    return get_plotlyjs().encode()


@require_GET
@cache_control(public=True, max_age=365 * 24 * 3600, immutable=True)
def plotly_js(request: HttpRequest, version: str) -> HttpResponse:
    """plotly.js from the installed plotly package (no CDN): the URL names the version, so it caches for a year."""
    return HttpResponse(_plotly_js(), content_type="text/javascript; charset=utf-8")
