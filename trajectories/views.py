"""The web UI's reading pages: the runs table, a run's event timeline (windows, live tail, search, detail) and
the compare view. Every read goes through the signed-in user's org (``orgs.web.membership_for``)."""

from __future__ import annotations

import json
import re
from datetime import datetime, time

from django.contrib.auth.decorators import login_required
from django.core.paginator import Paginator
from django.db.models import Q, TextField
from django.db.models.functions import Cast
from django.http import FileResponse, Http404, HttpRequest, HttpResponse, HttpResponseBadRequest
from django.shortcuts import render
from django.utils import timezone
from django.utils.html import escape
from django.utils.safestring import mark_safe

from orgs.serving import untrusted_file_response
from orgs.web import membership_for

from . import present
from .compare import compare
from .models import FINAL_STATUSES, Event, Label, Run, RunStatus

WINDOW = 100  # events per page of the timeline
MAX_WINDOW = 300
SEARCH_HITS = 50
RUNS_PER_PAGE = 50


def runs_for(request: HttpRequest):
    return Run.objects.for_org(membership_for(request).org)


def get_run_for_user(request: HttpRequest, public_id: str) -> Run:
    """The one way UI views load a run: in the user's current org, else 404."""
    run = runs_for(request).select_related("org", "collection", "parent").filter(public_id=public_id).first()
    if run is None:
        raise Http404("No such run")
    return run


def _date(value: str, end: bool = False) -> datetime | None:
    try:
        day = datetime.strptime(value, "%Y-%m-%d").date()
    except ValueError:
        return None
    return timezone.make_aware(datetime.combine(day, time.max if end else time.min))


def _label_filter(spec: str) -> Q:
    """``key`` (has the label) or ``key=value`` (JSON value when it parses, else the string)."""
    key, _, raw = spec.partition("=")
    if not raw:
        return Q(labels__key=key.strip())
    try:
        value = json.loads(raw)
    except ValueError:
        value = raw
    return Q(labels__key=key.strip(), labels__value=value)


def events_matching(q: str):
    """Events whose payload text holds ``q`` (case-insensitive), searched by the database."""
    return Event.objects.annotate(text=Cast("payload", TextField())).filter(text__icontains=q)


@login_required
def runs_table(request: HttpRequest) -> HttpResponse:
    runs = runs_for(request).select_related("collection")
    params = request.GET
    for field in ("task", "model", "agent", "status", "kind"):
        if value := params.get(field, "").strip():
            runs = runs.filter(**{field: value})
    if collection := params.get("collection", "").strip():
        runs = runs.filter(collection__name=collection)
    if label_spec := params.get("label", "").strip():
        runs = runs.filter(_label_filter(label_spec)).distinct()
    if since := _date(params.get("since", "")):
        runs = runs.filter(created__gte=since)
    if until := _date(params.get("until", ""), end=True):
        runs = runs.filter(created__lte=until)
    if q := params.get("q", "").strip():
        runs = runs.filter(pk__in=events_matching(q).filter(run__org=membership_for(request).org).values("run_id"))
    page = Paginator(runs, RUNS_PER_PAGE).get_page(params.get("page"))
    runs_on_page = list(page.object_list)
    verdicts: dict[int, dict[str, object]] = {}
    for label in Label.objects.filter(
        run__in=runs_on_page, event__isnull=True, key__in=("eval.pass", "eval.grade")
    ).order_by("created"):
        verdicts.setdefault(label.run_id, {})[label.key] = label.value
    for run in runs_on_page:
        run.verdict = verdicts.get(run.pk, {})
    org_runs = runs_for(request)
    context = {
        "nav": "runs",
        "page": page,
        "runs": runs_on_page,
        "params": params,
        "query": params.copy(),
        "statuses": RunStatus.values,
        "tasks": org_runs.order_by().values_list("task", flat=True).distinct()[:200],
        "models": org_runs.order_by().exclude(model="").values_list("model", flat=True).distinct()[:200],
        "agents": org_runs.order_by().exclude(agent="").values_list("agent", flat=True).distinct()[:50],
    }
    template = "trajectories/_runs_table.html" if request.htmx else "trajectories/runs.html"  # type: ignore[attr-defined]
    return render(request, template, context)


def timeline_rows(events: list[Event]) -> list[dict[str, object]]:
    return [
        {
            "seq": e.seq,
            "kind": e.kind,
            "ts": e.ts,
            "title": present.title(e),
            "preview": present.preview(e),
            "event": e,
        }
        for e in events
    ]


def _int(value: str | None, default: int | None = None) -> int | None:
    if value is None or value == "":
        return default
    if not re.fullmatch(r"\d{1,10}", value):
        raise ValueError(value)
    return int(value)


def window(
    run: Run, *, after: int | None = None, before: int | None = None, at: int | None = None, limit: int = WINDOW
):
    """One page of the timeline and whether there is more on each side. ``at`` centres the page on an event."""
    events = run.events.order_by("seq")
    if at is not None:
        start = max(1, at - limit // 3)
        page = list(events.filter(seq__gte=start)[:limit])
    elif before is not None:
        page = list(run.events.filter(seq__lt=before).order_by("-seq")[:limit])[::-1]
    else:
        page = list(events.filter(seq__gt=after or 0)[:limit])
    first = page[0].seq if page else (after or 0) + 1
    last = page[-1].seq if page else after or 0
    return page, first > 1, last < run.last_seq, first, last


@login_required
def run_events(request: HttpRequest, public_id: str) -> HttpResponse:
    """A page of timeline rows: ``after=N`` (the next rows, also what the live tail asks for), ``before=N`` (the
    rows above) or ``at=N`` (a page around one event, replacing the list)."""
    run = get_run_for_user(request, public_id)
    try:
        after, before, at = (_int(request.GET.get(k)) for k in ("after", "before", "at"))
        limit = min(_int(request.GET.get("limit"), WINDOW) or WINDOW, MAX_WINDOW)
    except ValueError:
        return HttpResponseBadRequest("after, before, at and limit must be whole numbers")
    page, more_before, more_after, first, last = window(run, after=after, before=before, at=at, limit=limit)
    context = {
        "run": run,
        "rows": timeline_rows(page),
        "more_before": more_before and (before is not None or at is not None),
        "more_after": more_after and (after is not None or at is not None),
        "first": first,
        "last": last,
    }
    response = render(request, "trajectories/_events.html", context)
    response["X-Jetty-Last-Seq"] = str(run.last_seq)
    response["X-Jetty-Status"] = run.status
    return response


@login_required
def event_detail(request: HttpRequest, public_id: str, seq: int) -> HttpResponse:
    run = get_run_for_user(request, public_id)
    event = run.events.filter(seq=seq).first()
    if event is None:
        raise Http404("No such event")
    labels = event.labels.order_by("key", "author")
    # A model call of a finished agent run can be forked from: the calls before it are replayed.
    fork_at = None
    if event.kind == "model.call" and run.kind == "agent" and run.status in FINAL_STATUSES:
        fork_at = run.events.filter(kind="model.call", seq__lt=event.seq).count()
    context = {"run": run, "event": event, "detail": present.detail(event), "labels": labels, "fork_at": fork_at}
    return render(request, "trajectories/_event_detail.html", context)


def _snippet(text: str, q: str, radius: int = 60) -> str:
    where = text.lower().find(q.lower())
    if where < 0:
        return escape(text[: radius * 2])
    start, end = max(0, where - radius), where + len(q) + radius
    return mark_safe(
        ("…" if start else "")
        + escape(text[start:where])
        + f"<mark>{escape(text[where : where + len(q)])}</mark>"
        + escape(text[where + len(q) : end])
        + ("…" if end < len(text) else "")
    )


@login_required
def run_search(request: HttpRequest, public_id: str) -> HttpResponse:
    """Events of one run whose content holds the query: the first hits, each a link to its place."""
    run = get_run_for_user(request, public_id)
    q = request.GET.get("q", "").strip()[:200]
    hits = []
    if q:
        for event in (
            events_matching(q).filter(run=run).order_by("seq").only("seq", "kind", "payload")[: SEARCH_HITS + 1]
        ):
            text = json.dumps(event.payload, ensure_ascii=False)
            hits.append({"seq": event.seq, "kind": event.kind, "snippet": _snippet(text, q)})
    return render(
        request,
        "trajectories/_search_hits.html",
        {"run": run, "q": q, "hits": hits[:SEARCH_HITS], "more": len(hits) > SEARCH_HITS},
    )


@login_required
def compare_runs(request: HttpRequest) -> HttpResponse:
    """Two to four runs side by side. Runs of another org are a 404 like everywhere else."""
    ids = [i for raw in request.GET.getlist("runs") for i in raw.split(",") if i.strip()]
    if not 2 <= len(ids) <= 4 or len(set(ids)) != len(ids):
        return render(
            request,
            "trajectories/compare.html",
            {"nav": "runs", "problem": "Pick two to four different runs."},
            status=400,
        )
    runs = [get_run_for_user(request, public_id.strip()) for public_id in ids]
    result = compare(runs)
    return render(
        request,
        "trajectories/compare.html",
        {"nav": "runs", "result": result, "columns": len(runs), "same_task": len({r.task for r in runs}) == 1},
    )


@login_required
def run_blob(request: HttpRequest, public_id: str, sha256: str) -> FileResponse:
    """A file's content as one of the run's file changes recorded it (the workspace at that step)."""
    from django.core.files.storage import default_storage

    from .actions import blob_for, blob_name

    run = get_run_for_user(request, public_id)
    change = blob_for(run, sha256)
    if change is None:
        raise Http404("No such file content in this run")
    name = str(change.payload.get("path", "file")).rsplit("/", 1)[-1]
    return untrusted_file_response(default_storage.open(blob_name(sha256), "rb"), filename=name, content_type=None)
