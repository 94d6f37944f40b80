"""The web UI's evals pages: labelling queues and dashboards (filled in by the labelling and dashboard work)."""

from __future__ import annotations

from django.contrib.auth.decorators import login_required
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render

from orgs.web import membership_for


@login_required
def queues(request: HttpRequest) -> HttpResponse:
    membership_for(request)
    return render(request, "evals/queues.html", {"nav": "labelling"})


@login_required
def dashboards(request: HttpRequest) -> HttpResponse:
    membership_for(request)
    return render(request, "evals/dashboards.html", {"nav": "dashboards"})
